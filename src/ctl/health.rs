//! `check_port_connectivity`: a health check that needs no credentials, for container
//! healthchecks (the image's `HEALTHCHECK`) where the default user may have been renamed by
//! `RABBITMQ_DEFAULT_USER` or replaced by a definitions file. Named after
//! `rabbitmq-diagnostics check_port_connectivity`, which also checks the listeners only.
//!
//! It passes when the AMQP port accepts a TCP connection (Warren opens it only once the store is
//! recovered) and the management API answers HTTP, where a 401 or 403 counts as an answer: the
//! server is serving, whoever asks. The AMQP connection is closed before the protocol header, so
//! the broker logs it at debug level only: a healthcheck every few seconds stays out of the log.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::client::{ApiError, ClientError};
use super::commands::Ctx;
use super::error::{code, CtlError};

/// How long the TCP connect to the AMQP port may take when no --timeout is given.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn check_port_connectivity(ctx: &mut Ctx<'_>, amqp_port: u16) -> Result<(), CtlError> {
    let host = ctx.opts.host.clone();
    let limit = match ctx.opts.timeout {
        Some(0) | None => CONNECT_TIMEOUT,
        Some(s) => Duration::from_secs(s),
    };
    ctx.info(&format!("Testing TCP connections to the AMQP port {amqp_port} and the management API on {host} ..."))?;
    connect(&host, amqp_port, limit)?;
    match ctx.client.get_json("/overview") {
        Ok(_) | Err(ClientError::Api(ApiError { status: 401 | 403, .. })) => {}
        Err(e) => return Err(e.into()),
    }
    if ctx.json() {
        ctx.print("{\"result\":\"ok\"}\n")
    } else {
        ctx.print("Successfully connected to ports AMQP and HTTP\n")
    }
}

fn connect(host: &str, port: u16, limit: Duration) -> Result<(), CtlError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| CtlError::new(code::UNAVAILABLE, format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, limit) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    let why = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
    Err(CtlError::new(code::UNAVAILABLE, format!("the AMQP port {port} on {host} does not accept connections: {why}")))
}
