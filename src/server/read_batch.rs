//! Frames held back while a connection's read loop handles one read's frames.
//!
//! Handling a read makes frames for other connections (deliveries to consumers) and for the
//! reading connection itself (confirms, replies, deliveries its acks made room for). Waking a
//! writer task at each frame lets a writer on the other worker thread send each delivery as it
//! comes, one `send` and one wake-up of its client per message, while the read is still being
//! handled; and waking two tasks from one task makes tokio wake an idle worker thread to steal
//! one (a futex round trip per message at a low rate). So while a read is handled, the
//! connections written for are collected here, on the thread that handles it (the handling
//! never awaits), and when it ends each sends what it holds with one non-blocking `send` from
//! this thread (`Outbound::send_or_wake`): no task wake-up at all, unless that connection's
//! writer is in the middle of a write (it sends the rest after it, in order) or the socket is
//! full or not plain TCP. At a low rate that saves the consumer's writer task a wake-up per
//! delivery (the thread switch that came with it, in S5); in a burst it is the same `send`.
//! The delay is the handling of one read buffer, at most a few hundred microseconds; a fanout
//! that turns one 64 KiB read into more than a consumer's high-water mark of deliveries parks
//! that consumer until its writer drains it (back-pressure as usual, only burstier).
//!
//! The store writer's thread does the same for the confirms of a group commit
//! ([`begin_completions`]): a batch settles many publishes of the same channels, and each would
//! wake that connection's writer task on a tokio thread; instead their frames go out at the end
//! of the batch, with one `send` each from the store writer's thread.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::outbound::Outbound;

thread_local! {
    /// The connection whose read is being handled on this thread (its outbound's address).
    static READING: Cell<usize> = const { Cell::new(0) };
    /// Other connections it wrote frames for, to send (or wake the writer of) when it ends.
    static HELD: RefCell<Vec<Arc<Outbound>>> = const { RefCell::new(Vec::new()) };
    /// On the store writer's thread, while a batch's completions run: the connections they
    /// wrote frames for.
    static COMPLETING: RefCell<Option<Vec<Arc<Outbound>>>> = const { RefCell::new(None) };
}

/// The store writer starts running a group commit's completions on this thread.
pub fn begin_completions() {
    COMPLETING.with(|c| c.borrow_mut().get_or_insert_with(Vec::new).clear());
}

/// The completions have run: each connection they wrote for sends its frames now.
pub fn end_completions() {
    let Some(touched) = COMPLETING.with(|c| c.borrow_mut().take()) else { return };
    for outbound in &touched {
        outbound.send_from_store();
    }
}

/// Whether `outbound`'s frames wait for the end of the completions running on this thread.
pub(super) fn defer_completing(outbound: &Arc<Outbound>) -> bool {
    COMPLETING.with(|c| match c.borrow_mut().as_mut() {
        Some(touched) => {
            if !touched.iter().any(|o| Arc::ptr_eq(o, outbound)) {
                touched.push(outbound.clone());
            }
            true
        }
        None => false,
    })
}

/// The read of the connection whose outbound is at `own` starts being handled.
pub(super) fn begin(own: usize) {
    READING.with(|r| r.set(own));
    crate::store::deferred::begin();
}

/// Whether `outbound`'s frames wait for the end of the read being handled on this thread;
/// false when none is.
pub(super) fn defer(outbound: &Arc<Outbound>) -> bool {
    match READING.with(Cell::get) {
        0 => false,
        own if own == outbound.address() => true,
        _ => {
            HELD.with(|h| {
                let mut h = h.borrow_mut();
                if !h.iter().any(|o| Arc::ptr_eq(o, outbound)) {
                    h.push(outbound.clone());
                }
            });
            true
        }
    }
}

/// The read has been handled: `each` gets the other connections it wrote for, once each. If
/// `each` panics, the writers of those it had not finished with are woken, so that nothing
/// stays buffered with nobody to send it.
pub(super) fn end(mut each: impl FnMut(&Outbound)) {
    // Cleared first: from here on `defer` never touches `HELD`, so `each` may write more
    // frames (a drain's dispatch does).
    READING.with(|r| r.set(0));
    crate::store::deferred::end();
    let mut held = Held { list: HELD.with(|h| std::mem::take(&mut *h.borrow_mut())), done: 0 };
    while let Some(outbound) = held.list.get(held.done) {
        each(outbound);
        held.done += 1;
    }
}

/// The connections a read wrote for, being handed over; those from `done` on get their
/// writer woken if the hand-over is cut short. The allocation goes back for the next read.
struct Held {
    list: Vec<Arc<Outbound>>,
    done: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.list.iter().skip(self.done).for_each(|o| o.wake());
        self.list.clear();
        let list = std::mem::take(&mut self.list);
        HELD.with(|h| {
            if let Ok(mut h) = h.try_borrow_mut() {
                if h.capacity() == 0 {
                    *h = list;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_for_others_are_held_until_the_read_ends_and_handed_over_once_each() {
        let (own, other) = (Arc::new(Outbound::default()), Arc::new(Outbound::default()));
        assert!(!defer(&other), "no read being handled: wake now");
        begin(own.address());
        assert!(defer(&own), "the reading connection's own: it sends them itself");
        assert!(defer(&other));
        assert!(defer(&other));
        let mut handed = Vec::new();
        end(|o| handed.push(o.address()));
        assert_eq!(handed, [other.address()], "once, and never the reading connection");
        assert!(!defer(&other), "the read ended");
        end(|_| panic!("nothing held"));
    }

    #[test]
    fn a_hand_over_cut_short_by_a_panic_wakes_the_writers_not_handed_over() {
        let own = Arc::new(Outbound::default());
        let others: Vec<_> = (0..3).map(|_| Arc::new(Outbound::default())).collect();
        begin(own.address());
        others.iter().for_each(|o| assert!(defer(o)));
        let first = others[0].address();
        let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            end(|o| assert_ne!(o.address(), first, "a dispatch that panics"));
        }));
        assert!(cut.is_err());
        for o in &others {
            assert!(o.is_woken(), "writer {:#x} woken", o.address());
        }
    }
}
