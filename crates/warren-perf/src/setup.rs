//! Before and after the measured part of a run: declaring the topology on the admin connection
//! and deleting it again, opening the idle connections and the load connections (each prepared
//! as producer or consumer before the clock starts). Apart from `measure.rs` because none of it
//! is timed, and the measured loop reads better without it.

use std::future::Future;

use tokio::task::JoinHandle;

use warren_protocol::methods::*;
use warren_protocol::{FieldTable, FieldValue, Method};

use crate::args::{AmqpUri, QueueType, Topology, WaitQueue};
use crate::client::{self, short, ClientError, Conn, WriteUnit};
use crate::consumer::{self, ConsumerPlan};
use crate::producer::{self, ProducerPlan};

/// Idle connections opened at once.
const IDLE_OPEN_PARALLEL: usize = 50;
pub(crate) const ADMIN_CHANNEL: u16 = 1;

fn exchange_declare(topology: &Topology, durable: bool) -> Result<Method, ClientError> {
    let (kind, arguments) = if topology.delayed {
        let mut args = FieldTable::new();
        args.insert(short("x-delayed-type")?, topology.exchange_type.as_str().into());
        ("x-delayed-message", args)
    } else {
        (topology.exchange_type.as_str(), FieldTable::new())
    };
    Ok(Method::ExchangeDeclare(ExchangeDeclare {
        exchange: short(&topology.exchange)?,
        kind: short(kind)?,
        passive: false,
        durable,
        auto_delete: false,
        internal: false,
        no_wait: false,
        arguments,
    }))
}

/// The arguments of a wait queue: its TTL, and dead letters to `target` by the default exchange.
fn wait_queue_arguments(wait: &WaitQueue, target: &str) -> Result<FieldTable, ClientError> {
    let mut arguments = FieldTable::new();
    // The range was checked to fit a signed 32-bit integer ('I', which RabbitMQ takes).
    let ttl = i32::try_from(wait.ttl_ms).unwrap_or(i32::MAX);
    arguments.insert(short("x-message-ttl")?, FieldValue::I32(ttl));
    arguments.insert(short("x-dead-letter-exchange")?, "".into());
    arguments.insert(short("x-dead-letter-routing-key")?, target.into());
    Ok(arguments)
}

pub(crate) async fn declare(
    admin: &mut Conn,
    topology: &Topology,
    durable: bool,
    keep: bool,
) -> Result<(), ClientError> {
    if topology.declare_exchange {
        let declare = exchange_declare(topology, durable)?;
        admin.call_expect(ADMIN_CHANNEL, declare, |m| matches!(m, Method::ExchangeDeclareOk(_))).await?;
    }
    // The consumers' queues first, then the wait queues that dead-letter into them.
    let mut typed = FieldTable::new();
    if let Some(ty) = topology.queue_type {
        typed.insert(short("x-queue-type")?, ty.as_str().into());
    }
    let plain = topology.queues.iter().map(|q| (q, typed.clone()));
    let target = topology.queues.first().map(String::as_str).unwrap_or_default();
    let mut waits = Vec::with_capacity(topology.wait_queues.len());
    for w in &topology.wait_queues {
        waits.push((&w.name, wait_queue_arguments(w, target)?));
    }
    for (queue, arguments) in plain.chain(waits) {
        let declare = Method::QueueDeclare(QueueDeclare {
            queue: short(queue)?,
            passive: false,
            durable,
            exclusive: false,
            auto_delete: false,
            no_wait: false,
            arguments,
        });
        admin.call_expect(ADMIN_CHANNEL, declare, |m| matches!(m, Method::QueueDeclareOk(_))).await?;
        // A stream cannot be purged (RabbitMQ and Warren close the connection with 540).
        if keep || topology.queue_type == Some(QueueType::Stream) {
            continue;
        }
        let purge = Method::QueuePurge(QueuePurge { queue: short(queue)?, no_wait: false });
        admin.call_expect(ADMIN_CHANNEL, purge, |m| matches!(m, Method::QueuePurgeOk(_))).await?;
    }
    // Bindings are pipelined: S8 declares a thousand.
    for chunk in topology.bindings.chunks(500) {
        for (q, key) in chunk {
            let bind = QueueBind {
                queue: short(&topology.queues[*q])?,
                exchange: short(&topology.exchange)?,
                routing_key: short(key)?,
                no_wait: false,
                arguments: FieldTable::new(),
            };
            admin.send(ADMIN_CHANNEL, &Method::QueueBind(bind));
        }
        admin.flush().await?;
        for _ in chunk {
            match tokio::time::timeout(client::SETUP_TIMEOUT, admin.next_method(ADMIN_CHANNEL)).await {
                Ok(Ok(Method::QueueBindOk(_))) => {}
                Ok(Ok(other)) => {
                    return Err(ClientError::Unexpected(format!("{} in reply to queue.bind", other.name())))
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ClientError::Timeout("queue.bind")),
            }
        }
    }
    Ok(())
}

/// Deletes the queues and the exchange of the run (unless `keep`) and closes the admin
/// connection; problems are reported, not fatal.
pub(crate) async fn cleanup(mut admin: Conn, topology: &Topology, keep: bool) {
    if keep {
        if let Err(e) = admin.close().await {
            eprintln!("warren perf: warning: closing the admin connection: {e}");
        }
        return;
    }
    // The wait queues first, so that nothing is dead-lettered into a queue already deleted.
    let waits = topology.wait_queues.iter().map(|w| &w.name);
    for queue in waits.chain(&topology.queues) {
        let Ok(name) = short(queue) else { continue };
        let delete =
            Method::QueueDelete(QueueDelete { queue: name, if_unused: false, if_empty: false, no_wait: false });
        if let Err(e) = admin.call_expect(ADMIN_CHANNEL, delete, |m| matches!(m, Method::QueueDeleteOk(_))).await {
            eprintln!("warren perf: warning: deleting queue {queue}: {e}");
            return;
        }
    }
    if topology.declare_exchange {
        if let Ok(name) = short(&topology.exchange) {
            let delete = Method::ExchangeDelete(ExchangeDelete { exchange: name, if_unused: false, no_wait: false });
            if let Err(e) = admin.call_expect(ADMIN_CHANNEL, delete, |m| matches!(m, Method::ExchangeDeleteOk(_))).await
            {
                eprintln!("warren perf: warning: deleting exchange {}: {e}", topology.exchange);
                return;
            }
        }
    }
    if let Err(e) = admin.close().await {
        eprintln!("warren perf: warning: closing the admin connection: {e}");
    }
}

/// Opens `n` connections (with one channel each) that do nothing until the end.
pub(crate) async fn open_idle(uri: &AmqpUri, n: u32) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::with_capacity(n as usize);
    let mut next = 0;
    while next < n {
        let batch: Vec<JoinHandle<Result<Conn, ClientError>>> = (next..n.min(next + IDLE_OPEN_PARALLEL as u32))
            .map(|i| {
                let uri = uri.clone();
                tokio::spawn(async move {
                    let mut conn = Conn::open(&uri, &format!("warren perf idle {i}")).await?;
                    conn.open_channel(producer::CHANNEL).await?;
                    conn.shrink_buffers();
                    Ok(conn)
                })
            })
            .collect();
        for (k, handle) in batch.into_iter().enumerate() {
            let i = next as usize + k;
            match handle.await {
                Ok(Ok(conn)) => conns.push(conn),
                Ok(Err(e)) => return Err(format!("idle connection {i} of {n}: {e}")),
                Err(e) => return Err(format!("idle connection {i} of {n}: {e}")),
            }
        }
        next = n.min(next + IDLE_OPEN_PARALLEL as u32);
    }
    Ok(conns)
}

pub(crate) async fn close_all(conns: Vec<Conn>) {
    let handles: Vec<_> = conns.into_iter().map(|c| tokio::spawn(c.close())).collect();
    for h in handles {
        let _ = h.await;
    }
}

/// What a load connection does between the handshake and the start of the run.
pub(crate) trait Prepare: Clone + Send + Sync + 'static {
    fn prepare<'a>(&'a self, conn: &'a mut Conn) -> impl Future<Output = Result<(), ClientError>> + Send + 'a;
}

impl Prepare for ProducerPlan {
    fn prepare<'a>(&'a self, conn: &'a mut Conn) -> impl Future<Output = Result<(), ClientError>> + Send + 'a {
        producer::prepare(conn, self)
    }
}

impl Prepare for ConsumerPlan {
    fn prepare<'a>(&'a self, conn: &'a mut Conn) -> impl Future<Output = Result<(), ClientError>> + Send + 'a {
        consumer::prepare(conn, self)
    }
}

/// Opens the load connections concurrently and prepares them (channel, consume, confirm mode).
pub(crate) async fn open_load_connections<P: Prepare>(
    uri: &AmqpUri,
    role: &str,
    plans: &[P],
    write_unit: WriteUnit,
) -> Result<Vec<Conn>, String> {
    let handles: Vec<_> = plans
        .iter()
        .enumerate()
        .map(|(i, plan)| {
            let (uri, plan, name) = (uri.clone(), plan.clone(), format!("warren perf {role} {}", i + 1));
            tokio::spawn(async move {
                let mut conn = Conn::open(&uri, &name).await?;
                plan.prepare(&mut conn).await?;
                conn.write_unit = write_unit;
                Ok::<_, ClientError>(conn)
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(handles.len());
    let mut failure = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(Ok(conn)) => conns.push(conn),
            Ok(Err(e)) => failure = failure.or(Some(format!("{role} {}: {e}", i + 1))),
            Err(e) => failure = failure.or(Some(format!("{role} {}: {e}", i + 1))),
        }
    }
    match failure {
        None => Ok(conns),
        Some(e) => {
            close_all(conns).await;
            Err(e)
        }
    }
}
