//! Deletes held back on a thread while a connection's read is handled, then handed to the
//! writer in one send.
//!
//! Draining a backlog, every ack submitted a delete, and each submit was a channel send that
//! woke the writer thread for a batch of one or two: the channel's send, receive and wake-up were
//! 13 % of the drain's CPU. A read holds many acks; their deletes (and delivered marks) now wait
//! for the end of the read (`server::read_batch`), and the writer takes them as one batch.
//!
//! Only deletes and delivered marks wait. A message's put is always sent at once, so a delete
//! can never reach the writer before the put of the same message (sequence numbers are never
//! reused); a delete that comes after its queue's deletion, or a mark a little later, changes
//! nothing. Nothing waits for a delete: a later flush need not see it.

use std::cell::{Cell, RefCell};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use super::backlog::Backlog;
use super::writer::Op;

/// Operations held for one writer (its backlog tells writers apart), and its channel.
type Held = (Arc<Backlog>, Sender<Op>, Vec<Op>);

thread_local! {
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}

/// A read starts being handled on this thread.
pub fn begin() {
    DEFERRING.with(|d| d.set(true));
}

/// The read has been handled: what was held goes to its writer, one send each.
pub fn end() {
    DEFERRING.with(|d| d.set(false));
    let held = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
    for (_, tx, mut ops) in held {
        let op = if ops.len() == 1 { ops.pop().expect("one") } else { Op::Many(ops) };
        // A writer that is gone has nobody to tell: deletes have no completion.
        let _ = tx.send(op);
    }
}

/// Holds `op` for the end of the read if one is being handled and `op` may wait; gives it back
/// otherwise.
pub(super) fn hold(backlog: &Arc<Backlog>, tx: &Sender<Op>, op: Op) -> Option<Op> {
    if !matches!(op, Op::Delete { .. } | Op::Delivered { .. }) || !DEFERRING.with(Cell::get) {
        return Some(op);
    }
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        match h.iter_mut().find(|(b, _, _)| Arc::ptr_eq(b, backlog)) {
            Some((_, _, ops)) => ops.push(op),
            None => h.push((backlog.clone(), tx.clone(), vec![op])),
        }
    });
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_wait_for_the_end_of_the_read_and_go_in_one_send_puts_do_not_wait() {
        let (tx, rx) = std::sync::mpsc::channel();
        let backlog = Arc::new(Backlog::default());
        let delete = |seq| Op::Delete { queue: 1, seq, split: true };
        assert!(hold(&backlog, &tx, delete(1)).is_some(), "no read being handled");
        begin();
        assert!(hold(&backlog, &tx, delete(2)).is_none());
        assert!(hold(&backlog, &tx, Op::Delivered { queue: 1, seq: 3 }).is_none());
        let put = Op::Put { queue: 1, seq: 4, record: bytes::Bytes::new(), body: None, done: None };
        assert!(hold(&backlog, &tx, put).is_some(), "a put is never held");
        assert!(rx.try_recv().is_err(), "nothing sent yet");
        end();
        match rx.try_recv() {
            Ok(Op::Many(ops)) => assert_eq!(ops.len(), 2),
            _ => panic!("one send with both"),
        }
        assert!(rx.try_recv().is_err());
        assert!(hold(&backlog, &tx, delete(5)).is_some(), "the read ended");
    }
}
