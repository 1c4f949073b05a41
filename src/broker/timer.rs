//! One timer thread per broker for everything that happens at a time rather than on a client's
//! action: message TTL expiry at a queue's head, unused-queue expiry (`x-expires`), consumer ack
//! timeouts. Targets are held weakly, so a deleted queue simply never fires; a target that is
//! woken early (or twice) just finds nothing due and re-arms for its next deadline.
//!
//! Times are wall-clock milliseconds since the UNIX epoch: message deadlines are stored with
//! persistent messages and must mean the same after a restart.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Something that wants to be called at a time.
pub trait TimerTarget: Send + Sync {
    fn fire(self: Arc<Self>, now_ms: u64);
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

struct Entry {
    at: u64,
    seq: u64,
    target: Weak<dyn TimerTarget>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    running: bool,
    stopped: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The broker's timer. Dropping it stops the thread.
#[derive(Default)]
pub struct Timers {
    shared: Arc<Shared>,
}

impl Timers {
    /// Calls `target.fire` at `at_ms` (or soon after), unless the target is gone by then.
    pub fn schedule(&self, at_ms: u64, target: Weak<dyn TimerTarget>) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.stopped {
            return;
        }
        st.seq += 1;
        let seq = st.seq;
        let earliest = st.heap.peek().is_none_or(|Reverse(e)| at_ms < e.at);
        st.heap.push(Reverse(Entry { at: at_ms, seq, target }));
        if !st.running {
            st.running = true;
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new().name("warren-timer".into()).spawn(move || run(shared));
            if spawned.is_err() {
                st.running = false;
                tracing::error!("cannot start the timer thread; TTLs fire only when their queue is used");
            }
        } else if earliest {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.stopped = true;
        st.heap.clear();
        self.shared.wake.notify_all();
    }
}

fn run(shared: Arc<Shared>) {
    let mut due = Vec::new();
    loop {
        {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if st.stopped {
                    return;
                }
                let now = now_ms();
                while st.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                    let Some(Reverse(e)) = st.heap.pop() else { break };
                    due.push(e.target);
                }
                if !due.is_empty() {
                    break;
                }
                st = match st.heap.peek() {
                    Some(Reverse(e)) => {
                        let wait = Duration::from_millis(e.at.saturating_sub(now));
                        shared.wake.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0
                    }
                    None => shared.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                };
            }
        }
        let now = now_ms();
        for target in due.drain(..) {
            if let Some(t) = target.upgrade() {
                t.fire(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Probe(AtomicU64);
    impl TimerTarget for Probe {
        fn fire(self: Arc<Self>, now_ms: u64) {
            self.0.store(now_ms, Ordering::SeqCst);
        }
    }

    #[test]
    fn fires_in_order_and_not_for_dropped_targets() {
        let timers = Timers::default();
        let (a, b) = (Arc::new(Probe(AtomicU64::new(0))), Arc::new(Probe(AtomicU64::new(0))));
        let gone = Arc::new(Probe(AtomicU64::new(0)));
        let start = now_ms();
        let weak = |p: &Arc<Probe>| Arc::downgrade(p) as Weak<dyn TimerTarget>;
        timers.schedule(start + 60, weak(&b));
        timers.schedule(start + 20, weak(&a));
        timers.schedule(start + 10, weak(&gone));
        drop(gone);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while b.0.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "timer fired");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (fa, fb) = (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst));
        assert!(fa >= start + 20 && fb >= start + 60 && fa <= fb, "a at {fa}, b at {fb}, start {start}");
    }
}
