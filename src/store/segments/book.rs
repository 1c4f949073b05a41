//! Which segment files still hold a live body: a count per segment, found from the queue and
//! sequence number of the message an ack deletes.
//!
//! A queue's messages reach the writer in sequence order (numbered and submitted under the
//! queue's lock; recovery scans them in key order too), so each queue's bodies fill segments in
//! runs of ascending sequence numbers: the run a sequence number falls in names its segment.
//! That costs a few words per queue and segment instead of a location per message, which the
//! broker would otherwise have to keep in memory for every message of a backlog.
//!
//! The counts hold because every body added is removed exactly once: by the delete of its
//! message (which leaves its queue once), or with its whole queue. The writer adds a body as
//! it appends it, whether or not the batch's writes then succeed: the queue keeps a message
//! whose write failed, and deletes it later like any other.

use std::collections::HashMap;

/// A queue's bodies numbered `first..=last`, all in `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first: u64,
    last: u64,
    segment: u32,
    live: u64,
}

#[derive(Debug, Default)]
pub struct Book {
    queues: HashMap<u64, Vec<Run>>,
    /// Live bodies per segment; a segment absent here holds none.
    live: HashMap<u32, u64>,
}

impl Book {
    /// A body of `queue` numbered `seq` is now in `segment` (`seq` above every earlier one of
    /// the queue).
    pub fn add(&mut self, queue: u64, seq: u64, segment: u32) {
        let runs = self.queues.entry(queue).or_default();
        match runs.last_mut() {
            Some(run) if run.segment == segment && run.last < seq => {
                run.last = seq;
                run.live += 1;
            }
            // Out of order, which the premise above rules out: counted where no delete finds
            // it, so the segment is kept (until a restart counts again) rather than freed early.
            Some(run) if run.last >= seq => tracing::warn!(queue, seq, segment, "body stored out of order"),
            _ => runs.push(Run { first: seq, last: seq, segment, live: 1 }),
        }
        *self.live.entry(segment).or_default() += 1;
    }

    /// The body of `queue` numbered `seq` is gone (told once per body: a message leaves its
    /// queue once). Returns its segment, and whether that segment now holds no live body;
    /// `None` when no segment holds it (a body stored before segments existed, or none).
    pub fn remove(&mut self, queue: u64, seq: u64) -> Option<(u32, bool)> {
        let runs = self.queues.get_mut(&queue)?;
        let at = runs.partition_point(|r| r.first <= seq).checked_sub(1)?;
        let run = &mut runs[at];
        if run.live == 0 || seq > run.last {
            return None;
        }
        run.live -= 1;
        let segment = run.segment;
        // An emptied run is forgotten, except the last: the queue may still be adding to it.
        if run.live == 0 && at + 1 < runs.len() {
            runs.remove(at);
        }
        if runs.is_empty() {
            self.queues.remove(&queue);
        }
        Some((segment, self.release(segment, 1)))
    }

    /// Every body of `queue` is gone (purge, deletion). Returns the segments that now hold no
    /// live body.
    pub fn remove_queue(&mut self, queue: u64) -> Vec<u32> {
        let runs = self.queues.remove(&queue).unwrap_or_default();
        runs.into_iter().filter(|r| r.live > 0 && self.release(r.segment, r.live)).map(|r| r.segment).collect()
    }

    fn release(&mut self, segment: u32, n: u64) -> bool {
        let Some(live) = self.live.get_mut(&segment) else { return true };
        *live = live.saturating_sub(n);
        if *live == 0 {
            self.live.remove(&segment);
            return true;
        }
        false
    }

    pub fn live(&self, segment: u32) -> u64 {
        self.live.get(&segment).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_free_once_every_body_in_it_is_gone_in_any_order() {
        let mut book = Book::default();
        // Queue 1: seqs 1-3 in segment 1, 4-5 in segment 2; queue 2: seq 9 in segment 1.
        for (q, seq, seg) in [(1, 1, 1), (1, 2, 1), (2, 9, 1), (1, 3, 1), (1, 4, 2), (1, 5, 2)] {
            book.add(q, seq, seg);
        }
        assert_eq!((book.live(1), book.live(2)), (4, 2));
        assert_eq!(book.remove(1, 4), Some((2, false)));
        assert_eq!(book.remove(1, 2), Some((1, false)));
        assert_eq!(book.remove(1, 1), Some((1, false)));
        assert_eq!(book.remove(1, 3), Some((1, false)), "queue 2 still has a body there");
        assert_eq!(book.remove(7, 1), None, "a queue with no body in any segment");
        assert_eq!(book.remove(2, 9), Some((1, true)));
        assert_eq!(book.remove(1, 5), Some((2, true)));
        assert_eq!(book.remove(1, 5), None, "gone already");
        assert!(book.live.is_empty());
        assert_eq!(book.queues[&1].len(), 1, "each queue keeps the run it adds to");
    }

    #[test]
    fn a_sequence_number_below_every_run_is_not_in_a_segment() {
        let mut book = Book::default();
        book.add(1, 10, 3);
        assert_eq!(book.remove(1, 4), None, "stored before segments existed");
        assert_eq!(book.live(3), 1);
    }

    #[test]
    fn a_body_out_of_order_keeps_its_segment_rather_than_freeing_it_early() {
        let mut book = Book::default();
        book.add(1, 5, 1);
        book.add(1, 3, 1);
        assert_eq!(book.remove(1, 5), Some((1, false)), "still counted");
        assert_eq!(book.remove(1, 3), None);
        assert_eq!(book.live(1), 1);
    }

    #[test]
    fn removing_a_queue_frees_the_segments_only_it_held() {
        let mut book = Book::default();
        for (q, seq, seg) in [(1, 1, 1), (1, 2, 2), (2, 1, 2), (1, 3, 3)] {
            book.add(q, seq, seg);
        }
        let mut freed = book.remove_queue(1);
        freed.sort();
        assert_eq!(freed, vec![1, 3]);
        assert_eq!(book.live(2), 1);
        assert_eq!(book.remove_queue(1), Vec::<u32>::new());
    }

    #[test]
    fn emptied_runs_are_forgotten_but_the_queue_keeps_adding_to_its_last() {
        let mut book = Book::default();
        book.add(1, 1, 1);
        book.add(1, 2, 2);
        assert_eq!(book.remove(1, 1), Some((1, true)));
        assert_eq!(book.queues[&1].len(), 1);
        assert_eq!(book.remove(1, 2), Some((2, true)));
        book.add(1, 3, 2);
        assert_eq!(book.live(2), 1);
        assert_eq!(book.remove(1, 3), Some((2, true)));
    }
}
