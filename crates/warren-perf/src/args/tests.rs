use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    perf: PerfArgs,
}

fn parse(args: &[&str]) -> PerfArgs {
    Cli::try_parse_from(std::iter::once("perf").chain(args.iter().copied())).expect("parses").perf
}

#[test]
fn defaults_are_s1_for_ten_seconds() {
    let a = parse(&[]);
    assert_eq!((a.producers, a.consumers, a.size, a.rate, a.confirm), (1, 1, 16, 0, 0));
    assert_eq!(a.uri, "amqp://guest:guest@127.0.0.1:5672/%2F");
    assert_eq!(a.validate(), Ok(Limits { duration: Some(10.0), pmessages: None }));
    let t = Topology::plan(&a);
    assert_eq!((t.exchange.as_str(), t.declare_exchange), ("warren-perf-direct", true));
    assert_eq!(t.queues, ["warren-perf"]);
    assert_eq!(t.bindings, [(0, "warren-perf".to_string())]);
    assert_eq!(t.producer_keys, [["warren-perf"]]);
    assert_eq!((t.consumer_queues.as_slice(), t.copies), (&[0][..], 1));
}

#[test]
fn perftest_style_short_and_long_flags() {
    let a = parse(&["-x", "2", "-y", "3", "-s", "1000", "-r", "500", "-C", "100", "-c", "50", "-q", "10", "-A", "5"]);
    assert_eq!((a.producers, a.consumers, a.size, a.rate), (2, 3, 1000, 500));
    assert_eq!((a.pmessages, a.confirm, a.prefetch, a.multi_ack_every), (Some(100), 50, 10, 5));
    assert_eq!(a.validate(), Ok(Limits { duration: None, pmessages: Some(100) }));
    let a = parse(&["--auto-ack", "--persistent", "--duration", "2.5", "--json", "--broker-pid", "42"]);
    assert!(a.auto_ack && a.persistent && a.json);
    assert_eq!((a.duration, a.broker_pid), (Some(2.5), Some(42)));
    assert!(Cli::try_parse_from(["perf", "--exchange-type", "headers"]).is_err());
}

#[test]
fn invalid_combinations_are_refused() {
    let refused = |args: &[&str]| parse(args).validate().unwrap_err();
    assert!(refused(&["--size", "15"]).contains("at least 16"));
    assert!(refused(&["--duration", "0"]).contains("positive"));
    assert!(refused(&["--prefetch", "10", "--multi-ack-every", "20"]).contains("stall"));
    assert!(refused(&["--auto-ack", "--multi-ack-every", "20"]).contains("no effect"));
    assert!(refused(&["--topic-bindings", "5"]).contains("topic"));
    assert!(refused(&["--fanout-queues", "3", "-t", "topic"]).contains("fanout"));
    assert!(refused(&["--queue-pattern", "q", "--queues", "3"]).contains("%d"));
    assert!(refused(&["-x", "0", "-y", "0"]).contains("nothing to do"));
    assert!(refused(&["--uri", "http://x"]).contains("amqp://"));
    assert!(refused(&["-e", "", "-t", "fanout"]).contains("default exchange"));
    assert!(parse(&["-x", "0", "-y", "0", "--idle-connections", "10"]).validate().is_ok());
    assert!(refused(&["--cmessages", "0"]).contains("at least 1"));
    assert!(refused(&["-y", "0", "--cmessages", "5"]).contains("needs consumers"));
}

#[test]
fn delayed_runs() {
    let a = parse(&["--delayed-exchange", "--delay-ms", "1000..60000", "-s", "24", "-t", "topic"]);
    assert_eq!(a.delay_ms, Some((1000, 60_000)));
    assert!(a.validate().is_ok());
    let t = Topology::plan(&a);
    assert!(t.delayed && t.declare_exchange && t.exchange_type == ExchangeType::Topic);
    assert_eq!(parse(&["--delayed-exchange", "--delay-ms", "500", "-s", "24"]).delay_ms, Some((500, 500)));
    let refused = |args: &[&str]| parse(args).validate().unwrap_err();
    assert!(refused(&["--delay-ms", "5", "-s", "24"]).contains("--delayed-exchange"));
    assert!(refused(&["--delayed-exchange", "--delay-ms", "5"]).contains("at least 24"));
    assert!(refused(&["--delayed-exchange", "-e", "amq.direct"]).contains("declares"));
    for bad in ["9..1", "x", "1..", "0..3000000000"] {
        assert!(Cli::try_parse_from(["perf", "--delay-ms", bad]).is_err(), "{bad}");
    }
}

#[test]
fn ttl_retry_runs_declare_wait_queues_that_dead_letter_into_the_consumers_queue() {
    let a = parse(&["--ttl-queues", "4", "--ttl-ms", "1000..4000", "-s", "24", "-x", "2", "-y", "3"]);
    assert_eq!((a.ttl_queues, a.ttl_ms), (4, Some((1000, 4000))));
    assert!(a.validate().is_ok());
    assert!(a.measures_lateness());
    assert_eq!(a.longest_delay_ms(), 4000);
    let t = Topology::plan(&a);
    assert_eq!((t.exchange.as_str(), t.declare_exchange, t.delayed), ("", false, false));
    assert_eq!(t.queues, ["warren-perf"]);
    assert!(t.bindings.is_empty());
    let names: Vec<_> = t.wait_queues.iter().map(|w| (w.name.as_str(), w.ttl_ms)).collect();
    assert_eq!(
        names,
        [
            ("warren-perf-wait-1-1000ms", 1000),
            ("warren-perf-wait-2-2000ms", 2000),
            ("warren-perf-wait-3-3000ms", 3000),
            ("warren-perf-wait-4-4000ms", 4000)
        ]
    );
    assert_eq!(t.producer_keys.len(), 2);
    assert!(t.producer_keys.iter().all(|k| k.len() == 4 && k[0] == "warren-perf-wait-1-1000ms"));
    assert_eq!((t.consumer_queues.as_slice(), t.copies), (&[0, 0, 0][..], 1));
    let one = parse(&["--ttl-queues", "1", "--ttl-ms", "500", "-s", "24", "-u", "work"]);
    assert!(one.validate().is_ok());
    assert_eq!(Topology::plan(&one).wait_queues, [WaitQueue { name: "work-wait-1-500ms".into(), ttl_ms: 500 }]);
}

#[test]
fn ttls_are_spread_evenly_over_the_range() {
    assert_eq!(spread(1000, 60_000, 16).len(), 16);
    assert_eq!(spread(1000, 60_000, 16)[..3], [1000, 4933, 8866]);
    assert_eq!(spread(1000, 60_000, 16)[15], 60_000);
    assert_eq!(spread(7, 7, 3), [7, 7, 7]);
    assert_eq!(spread(0, 10, 1), [0]);
    assert!(spread(0, 10, 0).is_empty());
    assert_eq!(spread(0, i32::MAX as u64, 2), [0, i32::MAX as u64]);
}

#[test]
fn ttl_retry_runs_refuse_what_does_not_fit() {
    let refused = |args: &[&str]| parse(args).validate().unwrap_err();
    assert!(refused(&["--ttl-queues", "4", "-s", "24"]).contains("--ttl-ms"));
    assert!(refused(&["--ttl-ms", "1..5", "-s", "24"]).contains("--ttl-queues"));
    assert!(refused(&["--ttl-queues", "4", "--ttl-ms", "1..5"]).contains("at least 24"));
    assert!(refused(&["--ttl-queues", "1", "--ttl-ms", "1..5", "-s", "24"]).contains("one TTL"));
    let ttl = ["--ttl-queues", "2", "--ttl-ms", "1..5", "-s", "24"];
    let with = |more: &[&'static str]| [&ttl[..], more].concat();
    assert!(refused(&with(&["--delayed-exchange"])).contains("use one"));
    assert!(refused(&with(&["-e", "amq.direct"])).contains("default exchange"));
    assert!(refused(&with(&["-t", "topic"])).contains("default exchange"));
    assert!(refused(&with(&["--fanout-queues", "2"])).contains("one queue"));
    assert!(refused(&with(&["--queues", "2", "--queue-pattern", "q-%d"])).contains("one queue"));
    assert!(parse(&with(&["-e", ""])).validate().is_ok(), "'' is the default exchange anyway");
    assert!(Cli::try_parse_from(["perf", "--ttl-ms", "0..3000000000"]).is_err());
}

#[test]
fn drain_runs_are_counted_not_timed() {
    let a = parse(&["-x", "0", "-D", "1000", "--keep-queues"]);
    assert!(a.keep_queues);
    assert_eq!(a.cmessages, Some(1000));
    assert_eq!(a.validate(), Ok(Limits { duration: None, pmessages: None }));
}

#[test]
fn queue_patterns_spread_producers_and_consumers() {
    let a = parse(&["-x", "4", "-y", "4", "--queue-pattern", "perf-%d", "--queues", "2"]);
    let t = Topology::plan(&a);
    assert_eq!(t.queues, ["perf-1", "perf-2"]);
    assert_eq!(t.consumer_queues, [0, 1, 0, 1]);
    assert_eq!(t.producer_keys, [["perf-1"], ["perf-2"], ["perf-1"], ["perf-2"]]);
    assert_eq!(t.bindings, [(0, "perf-1".to_string()), (1, "perf-2".to_string())]);
}

#[test]
fn fanout_reaches_every_queue() {
    let a = parse(&["--fanout-queues", "10", "-y", "10"]);
    let t = Topology::plan(&a);
    assert_eq!((t.exchange.as_str(), t.exchange_type, t.copies), ("warren-perf-fanout", ExchangeType::Fanout, 10));
    assert_eq!(t.queues.len(), 10);
    assert_eq!(t.queues[9], "warren-perf-fanout-10");
    assert_eq!(t.bindings.len(), 10);
    assert_eq!(t.consumer_queues, (0..10).collect::<Vec<_>>());
    assert_eq!(t.producer_keys, [[""]]);
}

#[test]
fn topic_keys_match_exactly_one_binding() {
    let a = parse(&["-t", "topic", "--topic-bindings", "4"]);
    let t = Topology::plan(&a);
    let keys: Vec<_> = t.bindings.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys, ["perf.0.*", "perf.1.#", "perf.2.*", "perf.3.#"]);
    assert_eq!(t.producer_keys, [["perf.0.x", "perf.1.x", "perf.2.x", "perf.3.x"]]);
    assert_eq!(t.copies, 1);
}

#[test]
fn the_default_and_amq_exchanges_are_not_declared() {
    let t = Topology::plan(&parse(&["-e", ""]));
    assert_eq!((t.exchange.as_str(), t.declare_exchange), ("", false));
    assert!(t.bindings.is_empty(), "the default exchange routes by queue name without bindings");
    assert_eq!(t.producer_keys, [["warren-perf"]]);
    let t = Topology::plan(&parse(&["-e", "amq.direct"]));
    assert_eq!((t.exchange.as_str(), t.declare_exchange, t.bindings.len()), ("amq.direct", false, 1));
}

#[test]
fn stream_runs_declare_durable_streams_and_expect_every_consumer_to_read_every_message() {
    let a = parse(&["--queue-type", "stream", "-y", "3", "-q", "1000", "--stream-offset", "first", "-C", "10"]);
    assert_eq!(a.validate(), Ok(Limits { duration: None, pmessages: Some(10) }));
    assert!(a.durable(), "streams are durable without --persistent");
    assert_eq!(a.stream_offset, Some(StreamOffset::Named("first".into())));
    let t = Topology::plan(&a);
    assert_eq!(t.queue_type, Some(QueueType::Stream));
    assert_eq!(t.deliveries_per_round(), 3, "one producer, three readers of its stream");
    // Two streams, three consumers: producer 1's stream has two readers, producer 2's one.
    let two =
        parse(&["--queue-type", "stream", "-x", "2", "-y", "3", "-q", "9", "--queue-pattern", "s%d", "--queues", "2"]);
    assert_eq!(Topology::plan(&two).deliveries_per_round(), 3);
    let fan = parse(&["--queue-type", "stream", "-x", "2", "-y", "4", "-q", "9", "--fanout-queues", "2"]);
    assert_eq!(Topology::plan(&fan).deliveries_per_round(), 8);
    // Classic queues: one consumer of a queue gets each message.
    let classic = parse(&["-x", "2", "-y", "3", "--fanout-queues", "2"]);
    assert_eq!(Topology::plan(&classic).deliveries_per_round(), 4);
    assert!(!classic.durable());
    assert!(parse(&["--queue-type", "quorum"]).durable());
    assert!(!parse(&["--queue-type", "classic"]).durable());
}

#[test]
fn stream_flags_that_do_not_fit_are_refused() {
    let refused = |args: &[&str]| parse(args).validate().unwrap_err();
    assert!(refused(&["--stream-offset", "first"]).contains("--queue-type stream"));
    assert!(refused(&["--queue-type", "quorum", "--stream-offset", "next"]).contains("--queue-type stream"));
    assert!(refused(&["--queue-type", "stream"]).contains("prefetch"));
    assert!(refused(&["--queue-type", "stream", "-q", "10", "--auto-ack"]).contains("manual acks"));
    assert!(parse(&["--queue-type", "stream", "-y", "0", "-C", "5"]).validate().is_ok(), "publishing only");
    assert!(Cli::try_parse_from(["perf", "--queue-type", "lazy"]).is_err());
    assert!(Cli::try_parse_from(["perf", "--stream-offset", "@later"]).is_err());
}

#[test]
fn uris() {
    let u = AmqpUri::parse("amqp://guest:guest@127.0.0.1:5680/%2F").unwrap();
    assert_eq!(
        u,
        AmqpUri {
            user: "guest".into(),
            password: "guest".into(),
            host: "127.0.0.1".into(),
            port: 5680,
            vhost: "/".into()
        }
    );
    let u = AmqpUri::parse("amqp://localhost").unwrap();
    assert_eq!((u.user.as_str(), u.port, u.vhost.as_str()), ("guest", 5672, "/"));
    let u = AmqpUri::parse("amqp://a%40b:p%3Aw@[::1]:1234/staging").unwrap();
    assert_eq!((u.user.as_str(), u.password.as_str()), ("a@b", "p:w"));
    assert_eq!((u.host.as_str(), u.port, u.vhost.as_str()), ("::1", 1234, "staging"));
    assert!(AmqpUri::parse("amqp://h:notaport/").is_err());
    assert!(AmqpUri::parse("amqps://h/").is_err());
    assert!(AmqpUri::parse("amqp://h/%zz").is_err());
    assert_eq!(AmqpUri::parse("amqp://u:secret@h:1/%2F").unwrap().to_string(), "amqp://u@h:1/%2F");
}
