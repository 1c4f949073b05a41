//! Reading a client that writes a frame per syscall at a high rate: a few frames per wake-up
//! instead of one.
//!
//! Most client libraries write each frame of a publish with its own `write`. When Warren keeps
//! up with such a client, every read finds one message waiting: the broker pays a wake-up, a
//! `recv`, and the TCP acknowledgement that `recv` sends (on loopback the kernel processes it
//! for the client inside that same call) per message — 7–12 µs of broker CPU on the test VM,
//! where reading the same messages in batches costs about 1. Which of the two a run settles into
//! depended on whether the broker started behind the client (`bench/compare.sh` S1f was
//! bimodal).
//!
//! So when a connection's reads keep being small and frequent, the socket's receive low-water
//! mark (`SO_RCVLOWAT`) is raised: the kernel wakes the reader once [`LOWAT`] bytes are there,
//! not at each segment. A read waits no longer than [`MAX_WAIT`] (tokio's timer: up to twice
//! that): then the mark goes back to one byte (the kernel signals at once if anything is
//! there), and up again if that read found at least half a mark, or when the pattern is seen
//! again: after such a pause, a run of [`RUN_AGAIN`] small reads is enough. (A single-threaded
//! client stops publishing while it reads its deliveries, a few hundred times a second in S1f;
//! a whole [`RUN`] of one wake-up per frame after each pause made 12,000–16,000 reads a second
//! where the raised mark makes about 400.)
//!
//! A client writing slower than [`RATE`] reads per second, or in larger writes, is never held:
//! the wait applies only where it saves a wake-up per message. Nor is a client that waits for
//! answers: a read after which the broker sent anything to the connection (a confirm, a
//! delivery, a method's reply — whichever task sent it), or after which publishes wait for
//! their confirms from the disk, lowers the mark at once and starts the count again, since the
//! client's next frame may wait for that answer — a request-reply client would otherwise
//! stall [`MAX_WAIT`] per exchange.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// A read smaller than this is a small read.
const SMALL: usize = 512;
/// Consecutive small reads, faster than [`RATE`], before the low-water mark goes up.
const RUN: u32 = 64;
/// The same after a wait for the mark ran out: the client paused (a single-threaded client
/// reading its deliveries, say) and the pattern was seen already.
const RUN_AGAIN: u32 = 8;
/// Reads per second from which one wake-up per read costs more than the wait below.
const RATE: u32 = 20_000;
/// The low-water mark while coalescing: a couple of dozen small publishes.
const LOWAT: i32 = 4096;
/// The longest a read waits for the low-water mark.
pub(super) const MAX_WAIT: Duration = Duration::from_millis(1);

/// A connection's reads, and whether its socket's low-water mark is raised.
pub(super) struct ReadCoalescing {
    /// The TCP socket (`None`: not a plain TCP connection; nothing is ever raised).
    fd: Option<RawFd>,
    small_run: u32,
    run_started: Instant,
    raised: bool,
    /// The last read waited [`MAX_WAIT`] for the mark and was lowered.
    waited: bool,
    /// Small reads that raise the mark next time: [`RUN`], or [`RUN_AGAIN`] after a pause.
    run: u32,
}

impl ReadCoalescing {
    pub(super) fn new(fd: Option<RawFd>) -> ReadCoalescing {
        ReadCoalescing { fd, small_run: 0, run_started: Instant::now(), raised: false, waited: false, run: RUN }
    }

    /// Whether the next read should be bounded by [`MAX_WAIT`] (then [`timed_out`] follows
    /// when it was).
    ///
    /// [`timed_out`]: Self::timed_out
    pub(super) fn is_raised(&self) -> bool {
        self.raised
    }

    /// After a read of `n` bytes.
    pub(super) fn record(&mut self, n: usize) {
        self.record_with(n, Instant::now);
    }

    /// [`record`](Self::record) with the clock given (tests run it without the scheduler's
    /// pauses counting).
    fn record_with(&mut self, n: usize, now: impl Fn() -> Instant) {
        if std::mem::take(&mut self.waited) && n >= LOWAT as usize / 2 {
            // The wait ran out with half the mark there: the client still writes more than a
            // mark every two milliseconds (a pause of its own, say), so the mark goes back up
            // rather than paying a wake-up per message for another run.
            self.raised = self.set_lowat(LOWAT);
            return;
        }
        if n >= SMALL {
            self.small_run = 0;
            return;
        }
        if self.small_run == 0 {
            self.run_started = now();
        }
        self.small_run += 1;
        if self.small_run >= self.run {
            let fast = now().saturating_duration_since(self.run_started) < Duration::from_secs(1) * self.run / RATE;
            if fast && !self.raised {
                self.raised = self.set_lowat(LOWAT);
            }
            self.small_run = 0;
            self.run = RUN;
        }
    }

    /// What the last read brought made the broker answer the client (see the module doc).
    pub(super) fn answered(&mut self) {
        self.small_run = 0;
        self.waited = false;
        self.run = RUN;
        if self.raised {
            self.set_lowat(1);
            self.raised = false;
        }
    }

    /// A raised read waited [`MAX_WAIT`]: the client went slower or quiet. The mark goes back
    /// to one byte, and the kernel signals at once if anything is there.
    pub(super) fn timed_out(&mut self) {
        if self.raised {
            self.set_lowat(1);
            self.raised = false;
            self.waited = true;
            self.small_run = 0;
            self.run = RUN_AGAIN;
        }
    }

    /// True when the socket took it.
    fn set_lowat(&self, bytes: i32) -> bool {
        let Some(fd) = self.fd else { return false };
        // SAFETY: `fd` is the connection's socket, open for as long as its read half (which
        // the reader holding this owns); the option value is a c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "SO_RCVLOWAT refused");
        }
        rc == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lowat(fd: RawFd) -> i32 {
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: a valid socket and an out-pointer of the size given.
        let rc =
            unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, (&mut v as *mut i32).cast(), &mut len) };
        assert_eq!(rc, 0);
        v
    }

    #[test]
    fn a_fast_run_of_small_reads_raises_the_mark_and_a_timeout_lowers_it() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut c = ReadCoalescing::new(Some(server.as_raw_fd()));
        // A fixed clock: a preempted test thread must not make a run slow.
        let t0 = Instant::now();
        for _ in 0..RUN - 1 {
            c.record_with(40, || t0);
        }
        assert!(!c.is_raised(), "not before a whole run");
        c.record_with(4096, || t0);
        for _ in 0..RUN - 1 {
            c.record_with(40, || t0);
        }
        assert!(!c.is_raised(), "a large read starts the run again");
        c.record_with(40, || t0);
        assert!(c.is_raised());
        assert_eq!(lowat(server.as_raw_fd()), LOWAT);
        c.timed_out();
        assert!(!c.is_raised());
        assert_eq!(lowat(server.as_raw_fd()), 1);
        // Half a mark came in the wait: back up at once.
        c.record_with(LOWAT as usize / 2, || t0);
        assert!(c.is_raised());
        // Less: down it stays, until a short fast run shows the client is back.
        c.timed_out();
        c.record_with(40, || t0);
        assert!(!c.is_raised());
        (1..RUN_AGAIN).for_each(|_| c.record_with(40, || t0));
        assert!(c.is_raised(), "after a pause, {RUN_AGAIN} fast small reads raise it again");
        // A slow run after the pause does not, and the next one takes a whole run again.
        c.timed_out();
        c.record_with(40, || t0);
        (1..RUN_AGAIN).for_each(|_| c.record_with(40, || t0 + Duration::from_secs(1)));
        assert!(!c.is_raised());
        (0..RUN_AGAIN).for_each(|_| c.record_with(40, || t0));
        assert!(!c.is_raised(), "a whole run once a short one was slow");
        (RUN_AGAIN..RUN).for_each(|_| c.record_with(40, || t0));
        assert!(c.is_raised());
        c.answered();

        // A client answered (request-reply) is never held: the count starts again.
        for _ in 0..RUN - 1 {
            c.record_with(40, || t0);
        }
        c.answered();
        c.record_with(40, || t0);
        assert!(!c.is_raised());
        (0..RUN).for_each(|_| c.record_with(40, || t0));
        assert!(c.is_raised());
        c.answered();
        assert!(!c.is_raised());
        assert_eq!(lowat(server.as_raw_fd()), 1);

        // Slow small reads (a client publishing now and then) never raise it.
        let mut slow = ReadCoalescing::new(Some(server.as_raw_fd()));
        slow.small_run = RUN - 1;
        slow.run_started = Instant::now() - Duration::from_secs(1);
        slow.record(40);
        assert!(!slow.is_raised());
        // Nor does anything without a socket (TLS).
        let mut tls = ReadCoalescing::new(None);
        (0..RUN).for_each(|_| tls.record(40));
        assert!(!tls.is_raised());
    }
}
