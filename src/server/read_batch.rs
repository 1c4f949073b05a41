//! Writer wake-ups held back while a connection's read loop handles one read's frames.
//!
//! Handling a read makes frames for other connections (deliveries to consumers) and for the
//! reading connection itself (confirms, replies, deliveries its acks made room for). Waking a
//! writer task at each frame lets a writer on the other worker thread send each delivery as it
//! comes, one `send` and one wake-up of its client per message, while the read is still being
//! handled; and waking two tasks from one task makes tokio wake an idle worker thread to steal
//! one (a futex round trip per message at a low rate). So while a read is handled, the wake-ups
//! are collected here, on the thread that handles it (the handling never awaits), and done
//! once each when it ends; the reading connection's own frames it sends itself (`outbound.rs`).
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

use tokio::sync::Notify;

use super::outbound::Outbound;

thread_local! {
    /// The connection whose read is being handled on this thread (its outbound's address).
    static READING: Cell<usize> = const { Cell::new(0) };
    /// Other connections' writers to wake when it ends.
    static WAKES: RefCell<Vec<Arc<Notify>>> = const { RefCell::new(Vec::new()) };
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

/// Whether the wake-up of the writer `wake` (of the outbound at `who`) waits for the end of the
/// read being handled on this thread; false when none is.
pub(super) fn defer(who: usize, wake: &Arc<Notify>) -> bool {
    match READING.with(Cell::get) {
        0 => false,
        own if own == who => true,
        _ => {
            WAKES.with(|w| {
                let mut w = w.borrow_mut();
                if !w.iter().any(|n| Arc::ptr_eq(n, wake)) {
                    w.push(wake.clone());
                }
            });
            true
        }
    }
}

/// The read has been handled: wakes the writers it held back.
pub(super) fn end() {
    // Cleared first: from here on `defer` never touches `WAKES`, so draining it under its
    // borrow is safe whatever a wake-up does (and keeps the allocation for the next read).
    READING.with(|r| r.set(0));
    crate::store::deferred::end();
    WAKES.with(|w| w.borrow_mut().drain(..).for_each(|n| n.notify_one()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_are_held_until_the_read_ends_and_done_once_each() {
        let (own, other) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        assert!(!defer(2, &other), "no read being handled: wake now");
        begin(1);
        assert!(defer(1, &own), "the reading connection's own: it sends them itself");
        assert!(defer(2, &other));
        assert!(defer(2, &other));
        assert_eq!(WAKES.with(|w| w.borrow().len()), 1, "one wake-up per writer");
        end();
        assert!(!defer(2, &other), "the read ended");
        // The held wake-up was done: a permit is stored for the writer.
        let woken = other.notified();
        tokio::pin!(woken);
        assert!(woken.as_mut().enable(), "notified once the read ended");
    }
}
