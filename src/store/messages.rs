//! Reading a durable queue's messages back: index entries and bodies by sequence number (a
//! consumer reaching paged-out messages), and a whole queue in order (recovery).
//!
//! Delivered marks: a message delivered and not yet acked must come back `redelivered` after
//! a crash. One mark per queue, the highest sequence number delivered, stands for all of them
//! (written by the writer at most once per queue and batch, never deleted per ack): whatever
//! is still stored at or below it may have been delivered, which is all `redelivered` promises
//! (a message a priority queue skipped may be flagged too). Earlier versions wrote a mark per
//! message; those are still read, and folded into the one mark at recovery.

use bytes::Bytes;
use rocksdb::{ColumnFamily, IteratorMode, ReadOptions, WriteBatch};

use super::segments::{self, Location};
use super::{message_key, queue_range, seq_of, Store, StoreError, CF_BODIES, CF_DELIVERED, CF_MESSAGES, CF_TRANSIENT};

/// A message's index entry as stored, and where its body is when that is in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub entry: Bytes,
    pub body_at: Option<Location>,
}

impl Stored {
    fn from_value(value: Bytes) -> Stored {
        let (entry, body_at) = segments::untag(value);
        Stored { entry, body_at }
    }
}

/// The key of a queue's delivered mark: the last of its range, which no message reaches.
pub(super) fn delivered_mark_key(queue: u64) -> [u8; 16] {
    message_key(queue, u64::MAX)
}

impl Store {
    /// Reads stored message records of a queue by sequence number (`None` where there is none),
    /// from the persistent messages' index or from the paged-out transient ones.
    pub fn read_messages(&self, queue: u64, seqs: &[u64], transient: bool) -> Result<Vec<Option<Stored>>, StoreError> {
        let values = self.read(if transient { CF_TRANSIENT } else { CF_MESSAGES }, queue, seqs)?;
        Ok(values.into_iter().map(|v| v.map(Stored::from_value)).collect())
    }

    /// Reads the bodies stored apart from their index entries: from the segment an entry
    /// names, or else (stored by an earlier version) from the bodies' column family.
    pub fn read_bodies(
        &self,
        queue: u64,
        wanted: &[(u64, Option<Location>)],
    ) -> Result<Vec<Option<Bytes>>, StoreError> {
        let places: Vec<Location> = wanted.iter().filter_map(|(_, at)| *at).collect();
        let legacy: Vec<u64> = wanted.iter().filter(|(_, at)| at.is_none()).map(|(seq, _)| *seq).collect();
        let mut in_segments = self.segments.read(&places)?.into_iter();
        let mut in_family =
            if legacy.is_empty() { Vec::new() } else { self.read(CF_BODIES, queue, &legacy)? }.into_iter();
        let mut next = |at: &Option<Location>| if at.is_some() { in_segments.next() } else { in_family.next() };
        Ok(wanted.iter().map(|(_, at)| next(at).flatten()).collect())
    }

    fn read(&self, cf: &str, queue: u64, seqs: &[u64]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let cf = self.cf(cf);
        if is_dense(seqs) {
            return self.scan(cf, queue, seqs);
        }
        let keys: Vec<(&ColumnFamily, [u8; 16])> = seqs.iter().map(|s| (cf, message_key(queue, *s))).collect();
        self.db
            .multi_get_cf(keys)
            .into_iter()
            .map(|r| r.map(|v| v.map(Bytes::from)).map_err(StoreError::from))
            .collect()
    }

    /// `seqs` (ascending, close together: a consumer reaching the next paged-out messages)
    /// read with one iterator over their range. A point lookup per key searched the index of
    /// every level for each of them: 36 % of the broker's CPU draining a durable backlog.
    fn scan(&self, cf: &ColumnFamily, queue: u64, seqs: &[u64]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let (first, last) = (seqs[0], seqs[seqs.len() - 1]);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(message_key(queue, last + 1));
        let mut it = self.db.raw_iterator_cf_opt(cf, opts);
        it.seek(message_key(queue, first));
        let mut out = Vec::with_capacity(seqs.len());
        let mut wanted = seqs.iter().copied().peekable();
        while let (Some(&want), Some(key)) = (wanted.peek(), it.key()) {
            let seq = seq_of(key)?;
            if seq < want {
                it.next();
                continue;
            }
            wanted.next();
            if seq == want {
                out.push(it.value().map(Bytes::copy_from_slice));
                it.next();
            } else {
                out.push(None);
            }
        }
        it.status()?;
        out.resize(seqs.len(), None);
        Ok(out)
    }

    /// Calls `f` with each persistent message of a queue, in order: its sequence number, its
    /// index entry and whether it may have been delivered before. Entries are handed over one
    /// at a time, so recovering a long backlog never holds it all in memory; bodies stored
    /// apart are not read. Returns the queue's delivered mark: the queue must number its next
    /// messages above it (a queue drained empty has no message left to say how far it got),
    /// or new messages would recover flagged.
    ///
    /// This is the queue's recovery: the bodies it has in segments are counted as live there
    /// (so it is called once per queue, before [`Store::recovered`]).
    pub fn for_each_message(&self, queue: u64, f: impl FnMut(u64, Stored, bool)) -> Result<Option<u64>, StoreError> {
        let scanned = self.scan_queue(queue, f);
        if scanned.is_err() {
            // Some of its bodies went uncounted: no segment may be deleted in this run.
            self.segments.counting_failed();
        }
        scanned
    }

    fn scan_queue(&self, queue: u64, mut f: impl FnMut(u64, Stored, bool)) -> Result<Option<u64>, StoreError> {
        let (from, to) = queue_range(queue);
        // One pass over each block: caching them would only grow the block cache by the size
        // of the index.
        let scan = || {
            let mut read = ReadOptions::default();
            read.set_iterate_upper_bound(to);
            read.fill_cache(false);
            read
        };
        let (mut mark, mut per_message) = (None, None::<u64>);
        for item in self.db.iterator_cf_opt(
            self.cf(CF_DELIVERED),
            scan(),
            IteratorMode::From(&from, rocksdb::Direction::Forward),
        ) {
            let (k, v) = item?;
            match seq_of(&k)? {
                u64::MAX => mark = v.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes),
                seq => per_message = per_message.max(Some(seq)),
            }
        }
        if let Some(highest) = per_message {
            // An earlier version's marks, one per message: folded into the one mark.
            let mut fold = WriteBatch::default();
            fold.delete_range_cf(self.cf(CF_DELIVERED), from, delivered_mark_key(queue));
            let highest = highest.max(mark.unwrap_or(0));
            fold.put_cf(self.cf(CF_DELIVERED), delivered_mark_key(queue), highest.to_be_bytes());
            self.write(fold)?;
            mark = Some(highest);
        }
        let mut in_segments = Vec::new();
        for item in self.db.iterator_cf_opt(
            self.cf(CF_MESSAGES),
            scan(),
            IteratorMode::From(&from, rocksdb::Direction::Forward),
        ) {
            let (k, v) = item?;
            let seq = seq_of(&k)?;
            let stored = Stored::from_value(Bytes::from(v.into_vec()));
            if let Some(at) = stored.body_at {
                in_segments.push((seq, at.segment));
                if in_segments.len() == 4096 {
                    self.count_bodies(queue, &mut in_segments);
                }
            }
            f(seq, stored, mark.is_some_and(|m| seq <= m));
        }
        self.count_bodies(queue, &mut in_segments);
        Ok(mark)
    }

    fn count_bodies(&self, queue: u64, in_segments: &mut Vec<(u64, u32)>) {
        let mut book = self.segments.book();
        in_segments.drain(..).for_each(|(seq, segment)| book.add(queue, seq, segment));
    }
}

/// Ascending and at least half of the range they span: worth one iterator.
fn is_dense(seqs: &[u64]) -> bool {
    match (seqs.first(), seqs.last()) {
        (Some(&first), Some(&last)) if last < u64::MAX => {
            seqs.windows(2).all(|w| w[0] < w[1]) && last - first < 2 * seqs.len() as u64
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_runs_are_scanned_and_both_ways_read_the_same() {
        assert!(is_dense(&[3, 4, 5, 7]));
        assert!(!is_dense(&[5, 4]), "not ascending");
        assert!(!is_dense(&[1, 100]), "sparse");
        assert!(!is_dense(&[]));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = WriteBatch::default();
        for seq in [2u64, 3, 5, 6, 9] {
            b.put_cf(store.cf(CF_BODIES), message_key(1, seq), seq.to_be_bytes());
        }
        // Neighbouring queues' keys around the range.
        b.put_cf(store.cf(CF_BODIES), message_key(0, 4), b"other");
        b.put_cf(store.cf(CF_BODIES), message_key(2, 4), b"other");
        store.db.write(b).unwrap();
        let want = |seqs: &[u64]| -> Vec<Option<Bytes>> {
            seqs.iter().map(|s| [2, 3, 5, 6, 9].contains(s).then(|| Bytes::copy_from_slice(&s.to_be_bytes()))).collect()
        };
        for seqs in [&[2u64, 3, 4, 5][..], &[1, 2, 3], &[4, 5, 6, 7, 8, 9, 10], &[9, 10, 11], &[1, 9, 40], &[4]] {
            let wanted: Vec<(u64, Option<Location>)> = seqs.iter().map(|s| (*s, None)).collect();
            assert_eq!(store.read_bodies(1, &wanted).unwrap(), want(seqs), "{seqs:?}");
        }
    }

    fn redelivered(store: &Store, queue: u64) -> Vec<(u64, bool)> {
        let mut out = Vec::new();
        store.for_each_message(queue, |seq, _, delivered| out.push((seq, delivered))).unwrap();
        out
    }

    #[test]
    fn one_delivered_mark_per_queue_that_never_goes_down_and_old_marks_are_folded_in() {
        use super::super::writer::{Op, StoreWriter};
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let mut b = WriteBatch::default();
        for seq in 1..=5u64 {
            b.put_cf(store.cf(CF_MESSAGES), message_key(1, seq), b"m");
            b.put_cf(store.cf(CF_MESSAGES), message_key(2, seq), b"m");
        }
        // Queue 2 as an earlier version left it: a mark per delivered message.
        b.put_cf(store.cf(CF_DELIVERED), message_key(2, 2), []);
        store.db.write(b).unwrap();

        let (writer, thread) = StoreWriter::start(store.clone());
        // A priority queue delivered 3, then 1: the mark stays at 3.
        writer.submit(Op::Delivered { queue: 1, seq: 3 });
        writer.flush();
        writer.submit(Op::Delivered { queue: 1, seq: 1 });
        writer.flush();
        let flags = vec![(1, true), (2, true), (3, true), (4, false), (5, false)];
        assert_eq!(redelivered(&store, 1), flags);
        // An ack deletes the message and leaves the mark.
        writer.submit(Op::Delete { queue: 1, seq: 2, split: false });
        writer.flush();
        assert_eq!(redelivered(&store, 1), vec![(1, true), (3, true), (4, false), (5, false)]);

        let old = vec![(1, true), (2, true), (3, false), (4, false), (5, false)];
        assert_eq!(redelivered(&store, 2), old);
        let marks: Vec<_> =
            store.db.iterator_cf(store.cf(CF_DELIVERED), IteratorMode::Start).map(|kv| kv.unwrap().0).collect();
        let marks: Vec<_> = marks.into_iter().filter(|k| **k != super::super::CHECKPOINT_KEY).collect();
        let keys = [delivered_mark_key(1), delivered_mark_key(2)].map(|k| k.to_vec().into_boxed_slice());
        assert_eq!(marks, keys, "the old per-message mark was folded into the queue's mark");
        assert_eq!(redelivered(&store, 2), old, "and reads the same after");
        assert_eq!(store.for_each_message(1, |_, _, _| {}).unwrap(), Some(3), "the mark, for the queue's numbering");
        assert_eq!(store.for_each_message(9, |_, _, _| {}).unwrap(), None);
        drop(writer);
        thread.join().unwrap();
    }
}
