//! `check_port_connectivity`: a health check that needs no credentials, for container
//! healthchecks (the image's `HEALTHCHECK`) where the default user may have been renamed by
//! `RABBITMQ_DEFAULT_USER` or replaced by a definitions file. Named after
//! `rabbitmq-diagnostics check_port_connectivity`, which also checks the listeners only.
//!
//! It passes when the AMQP port accepts a TCP connection and the management API answers HTTP
//! (Warren opens the API once the store is recovered and the definitions file loaded). The API is
//! asked without credentials, so its 401 is the expected answer: the server is serving, whoever
//! asks. Neither probe leaves a line in the broker's log at the default level (the AMQP
//! connection is closed before the protocol header, and a request without credentials is not a
//! refused login), so a healthcheck every few seconds does not fill it.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

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
    let url = format!("{}/overview", ctx.client.endpoint().base);
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(limit)).build().into();
    match agent.get(&url).call() {
        Ok(answer) if answer.status().is_success() || matches!(answer.status().as_u16(), 401 | 403) => {}
        Ok(answer) => {
            return Err(CtlError::new(code::UNAVAILABLE, format!("{url} answered {}", answer.status())));
        }
        Err(e) => {
            return Err(CtlError::new(code::UNAVAILABLE, format!("the management API at {url} does not answer: {e}")))
        }
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
