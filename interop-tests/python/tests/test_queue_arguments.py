"""queue.declare arguments: unknown x- arguments are accepted and ignored;
known ones are validated, and a bad value closes the channel with 406 and
RabbitMQ's text:

  PRECONDITION_FAILED - invalid arg '<arg>' for queue '<q>' in vhost '/': <detail>

<detail> is an Erlang term as RabbitMQ prints it. Type names are those of the
AMQP field-table types: pika sends a Python int as signedint (or long when it
does not fit in 32 bits), str as longstr, bool as bool, Decimal as decimal,
bytes as binary, list as array, dict as table."""

from decimal import Decimal

import pytest

from helpers import expect_channel_error



def declare_error(amqp, arguments):
    ch = amqp.connect().channel()
    q = amqp.name("q")
    amqp.track_queue(q)  # in case it is (wrongly) created
    return q, expect_channel_error(406, ch.queue_declare, q, arguments=arguments)


def invalid_arg(arg, q, detail):
    return f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {detail}"


NOT_INTEGER = '"expected integer, got {}"'

INVALID = [
    # integer arguments: wrong type
    ("x-message-ttl", "abc", NOT_INTEGER.format("longstr")),
    ("x-message-ttl", True, NOT_INTEGER.format("bool")),
    ("x-message-ttl", Decimal("1.5"), NOT_INTEGER.format("decimal")),
    ("x-expires", "x", NOT_INTEGER.format("longstr")),
    ("x-max-length", "ten", NOT_INTEGER.format("longstr")),
    ("x-max-length", b"10", NOT_INTEGER.format("binary")),
    ("x-max-length", [1], NOT_INTEGER.format("array")),
    ("x-max-length", {"n": 1}, NOT_INTEGER.format("table")),
    ("x-max-length-bytes", "x", NOT_INTEGER.format("longstr")),
    ("x-max-priority", "x", NOT_INTEGER.format("longstr")),
    ("x-max-priority", True, NOT_INTEGER.format("bool")),
    # integer arguments: out of range
    ("x-message-ttl", -1, "{value_negative,-1}"),
    ("x-message-ttl", 315360000001, "{value_too_large,315360000001}"),
    ("x-expires", 0, "{value_zero,0}"),
    ("x-expires", -1, "{value_negative,-1}"),
    ("x-expires", 315360000001, "{value_too_large,315360000001}"),
    ("x-max-length", -1, "{value_negative,-1}"),
    ("x-max-length-bytes", -5, "{value_negative,-5}"),
    ("x-max-priority", -1, "{value_negative,-1}"),
    ("x-max-priority", 256, "{max_value_exceeded,256}"),
    # enumerations and booleans
    ("x-overflow", "bogus", "invalid_overflow"),
    ("x-overflow", 1, "{unacceptable_type,signedint}"),
    ("x-single-active-consumer", "yes", "{unacceptable_type,longstr}"),
    ("x-single-active-consumer", 1, "{unacceptable_type,signedint}"),
    ("x-dead-letter-routing-key", 1, "{unacceptable_type,signedint}"),
    ("x-queue-mode", "bogus", "\"unsupported queue mode 'bogus'\""),
    ("x-queue-type", "bogus", "\"unsupported queue type 'bogus'\""),
]


@pytest.mark.parametrize(
    "arg, value, detail",
    INVALID,
    ids=[f"{arg}={value!r}" for arg, value, _ in INVALID],
)
def test_invalid_argument_value(amqp, arg, value, detail):
    q, text = declare_error(amqp, {arg: value})
    assert text == invalid_arg(arg, q, detail)


def test_dead_letter_exchange_of_the_wrong_type(amqp):
    # checked before the others, with its own wording
    q, text = declare_error(amqp, {"x-dead-letter-exchange": 1})
    assert text == (
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '{q}' in vhost '/'"
    )


def test_dead_letter_routing_key_needs_a_dead_letter_exchange(amqp):
    q, text = declare_error(amqp, {"x-dead-letter-routing-key": "rk"})
    assert text == invalid_arg("x-dead-letter-routing-key", q, "routing_key_but_no_dlx_defined")


def test_invalid_argument_leaves_the_connection_usable(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    expect_channel_error(406, ch.queue_declare, amqp.name("q"), arguments={"x-max-length": "ten"})
    assert conn.is_open
    amqp.queue(conn.channel())


@pytest.mark.parametrize(
    "arguments",
    [
        {"x-message-ttl": 0},
        {"x-message-ttl": 315360000000},
        {"x-expires": 1},
        {"x-expires": 315360000000},
        {"x-max-length": 0},
        {"x-max-length": 2**40},  # long
        {"x-max-length-bytes": 0},
        {"x-max-priority": 0},
        {"x-max-priority": 255},
        {"x-overflow": "drop-head"},
        {"x-overflow": "reject-publish"},
        {"x-overflow": "reject-publish-dlx"},
        {"x-single-active-consumer": False},
        {"x-dead-letter-exchange": ""},
        {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": ""},
        {"x-dead-letter-exchange": "does-not-exist-yet"},
        {"x-queue-type": "classic"},
        {"x-queue-mode": "lazy"},
    ],
    ids=lambda a: ",".join(f"{k}={v!r}" for k, v in a.items()),
)
def test_valid_edge_values_are_accepted(amqp, arguments):
    ch = amqp.connect().channel()
    q = amqp.queue(ch, arguments=arguments)
    if arguments.get("x-expires") == 1:
        return  # accepted; a queue unused for 1 ms may already be gone again
    assert ch.queue_declare(q, passive=True).method.queue == q


def test_unknown_x_arguments_are_ignored(amqp):
    ch = amqp.connect().channel()
    args = {"x-unknown-thing": "whatever", "x-nested": {"a": [1, "two"]}, "not-even-x": 5}
    q = amqp.queue(ch, arguments=args)
    # redeclaring with other unknown arguments (or none) is not "inequivalent"
    ch.queue_declare(q, arguments={"x-unknown-thing": "something else"})
    ch.queue_declare(q)
    ch.basic_publish("", q, b"still a normal queue")
    assert ch.basic_get(q, auto_ack=True)[2] == b"still a normal queue"


def test_inequivalent_known_argument_texts(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch, arguments={"x-max-length": 10})
    text = expect_channel_error(406, ch.queue_declare, q, arguments={"x-max-length": 11})
    assert text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': "
        "received '11' but current is '10'"
    )
    ch = amqp.connect().channel()
    text = expect_channel_error(406, ch.queue_declare, q)
    assert text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': "
        "received none but current is the value '10' of type 'signedint'"
    )
    ch = amqp.connect().channel()
    text = expect_channel_error(406, ch.queue_declare, q, arguments={"x-max-length": 10, "x-message-ttl": 5})
    assert text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': "
        "received the value '5' of type 'signedint' but current is none"
    )
