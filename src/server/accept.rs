//! Riding out failed accepts. When the process runs out of file descriptors (EMFILE, ENFILE) or
//! socket memory (ENOBUFS, ENOMEM), `accept` fails while a connection waits in the backlog, and
//! the listener stays readable: retrying at once would spin a core, and logging every retry
//! would write twenty lines a second for as long as the shortage lasts. Every listener (AMQP,
//! AMQPS, the HTTP API, Prometheus) pauses [`RETRY_AFTER`] between tries instead, and logs a run
//! of failures once when it starts and once when it ends (how many tries failed, for how long).
//! At the edge of the limit, where every freed descriptor is taken at once and the next accept
//! fails again, runs start and end many times a second: a run that starts within [`QUIET`] of the
//! last line is not logged, its tries are counted in the next line that is. Errors that belong to
//! the one connection (reset or aborted while it waited) are no shortage: the next connection is
//! accepted at once and nothing is logged.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// The pause after a failed accept: short enough that a freed descriptor is put to use soon,
/// long enough that a listener stuck at the limit costs nothing measurable (20 tries a second).
pub const RETRY_AFTER: Duration = Duration::from_millis(50);

/// At most one run of failures is logged per this long.
pub const QUIET: Duration = Duration::from_secs(60);

/// One listener's failed accepts.
pub struct AcceptErrors {
    listener: &'static str,
    quiet: Duration,
    /// The current run of failures: when it started, its tries, whether its start was logged.
    run: Option<(Instant, u64, bool)>,
    /// Failed tries of runs that were not logged, for the next line.
    unreported: u64,
    last_line: Option<Instant>,
    /// Log lines written about failures, over the listener's life.
    lines: u64,
}

impl AcceptErrors {
    pub fn new(listener: &'static str) -> AcceptErrors {
        AcceptErrors::with_quiet(listener, QUIET)
    }

    fn with_quiet(listener: &'static str, quiet: Duration) -> AcceptErrors {
        AcceptErrors { listener, quiet, run: None, unreported: 0, last_line: None, lines: 0 }
    }

    /// After a failed accept: how long to pause before the next (`None`: the error was the
    /// connection's own, accept the next one at once). Logs the start of a run (see above).
    pub fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        if is_connection_error(e) {
            debug!(listener = self.listener, error = %e, "a connection went away before it was accepted");
            return None;
        }
        match &mut self.run {
            Some((_, tries, _)) => *tries += 1,
            None => {
                let log = self.last_line.is_none_or(|t| t.elapsed() >= self.quiet);
                if log {
                    warn!(
                        listener = self.listener,
                        error = %e,
                        unlogged_failed_tries = self.unreported,
                        "cannot accept connections; retrying every {RETRY_AFTER:?}, and saying so once more when it works again"
                    );
                    self.line();
                }
                self.run = Some((Instant::now(), 1, log));
            }
        }
        Some(RETRY_AFTER)
    }

    /// After a successful accept: ends a run of failures, if one was going on.
    pub fn accepted(&mut self) {
        match self.run.take() {
            None => {}
            Some((since, tries, true)) => {
                warn!(
                    listener = self.listener,
                    failed_tries = tries,
                    "accepting connections again after {:.1} s",
                    since.elapsed().as_secs_f64()
                );
                self.line();
            }
            Some((_, tries, false)) => self.unreported += tries,
        }
    }

    fn line(&mut self) {
        self.lines += 1;
        self.last_line = Some(Instant::now());
        self.unreported = 0;
    }

    /// Accepts the next connection on `listener`, pausing after failures as above.
    pub async fn accept(&mut self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(conn) => {
                    self.accepted();
                    return conn;
                }
                Err(e) => {
                    if let Some(pause) = self.failed(&e) {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
    }

    /// Log lines written about failed accepts so far.
    pub fn lines_logged(&self) -> u64 {
        self.lines
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// A plain TCP listener for axum (the HTTP API, Prometheus) that handles failed accepts as
/// above; axum's own logs each failure at error level and pauses a whole second.
pub struct HttpListener {
    inner: TcpListener,
    errors: AcceptErrors,
}

impl HttpListener {
    pub fn new(inner: TcpListener, name: &'static str) -> HttpListener {
        HttpListener { inner, errors: AcceptErrors::new(name) }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        self.errors.accept(&self.inner).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn a_run_of_failures_is_logged_once_and_its_end_once() {
        let mut errors = AcceptErrors::new("test");
        for _ in 0..1000 {
            assert_eq!(errors.failed(&emfile()), Some(RETRY_AFTER), "every failure pauses");
        }
        assert_eq!(errors.lines_logged(), 1, "a thousand failed tries, one line");
        errors.accepted();
        assert_eq!(errors.lines_logged(), 2, "and one when accepting works again");
        errors.accepted();
        assert_eq!(errors.lines_logged(), 2, "accepting normally logs nothing");
    }

    #[test]
    fn runs_at_the_edge_of_the_limit_are_not_logged_one_by_one() {
        let mut errors = AcceptErrors::new("test");
        errors.failed(&emfile());
        errors.accepted();
        // Each freed descriptor is taken at once and the next accept fails again.
        for _ in 0..500 {
            errors.failed(&io::Error::from_raw_os_error(libc::ENFILE));
            errors.failed(&emfile());
            errors.accepted();
        }
        assert_eq!(errors.lines_logged(), 2, "only the first run, within the quiet period");
        assert_eq!(errors.unreported, 1000, "the others' tries wait for the next line");

        let mut errors = AcceptErrors::with_quiet("test", Duration::ZERO);
        errors.failed(&emfile());
        errors.accepted();
        errors.failed(&emfile());
        assert_eq!(errors.lines_logged(), 3, "a run after the quiet period is logged again");
    }

    #[test]
    fn a_connection_s_own_error_neither_pauses_nor_logs() {
        let mut errors = AcceptErrors::new("test");
        for kind in [io::ErrorKind::ConnectionAborted, io::ErrorKind::ConnectionReset] {
            assert_eq!(errors.failed(&io::Error::from(kind)), None);
        }
        errors.accepted();
        assert_eq!(errors.lines_logged(), 0);
    }
}
