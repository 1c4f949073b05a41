//! Streams on disk: one append-only log per stream, read by offset.
//!
//! - `streams`: `stream id ‖ offset` (big-endian) → `bytes before it (u64) ‖ message record`.
//!   A stream is one contiguous key range, so reading from an offset is one seek and an
//!   iterator, retention is a range delete of a prefix, and deleting the stream is one more.
//!   The running byte count in every entry makes the size of any range two point reads.
//! - `stream_meta`: `stream id ‖ 'S' ‖ first offset` → a segment's first timestamp, bytes
//!   before it and (once sealed) its last timestamp; `stream id ‖ 'O' ‖ consumer name` → the
//!   offset that consumer acked last (server-side offset tracking).
//!
//! Segments exist only in this metadata: they are the unit of retention, as in RabbitMQ, so
//! that a stream is cut in whole segments and never below its active one. Nothing here grows in
//! memory with the length of the log: start-up reads the segment list and the two ends.

use bytes::{BufMut, Bytes, BytesMut};
use rocksdb::{Direction, IteratorMode, Options, ReadOptions};

use super::{message_key, queue_range, Store, StoreError};

pub(super) const CF_STREAMS: &str = "streams";
pub(super) const CF_STREAM_META: &str = "stream_meta";

const SEGMENT: u8 = b'S';
const TRACKING: u8 = b'O';

/// Stream entries are written once and deleted a segment at a time: bodies go to blob files so
/// compaction never rewrites them.
pub(super) fn stream_options() -> Options {
    let mut o = Options::default();
    o.set_enable_blob_files(true);
    o.set_min_blob_size(1024);
    o
}

pub fn entry_key(stream: u64, offset: u64) -> [u8; 16] {
    message_key(stream, offset)
}

pub fn segment_key(stream: u64, first: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&stream.to_be_bytes());
    k[8] = SEGMENT;
    k[9..].copy_from_slice(&first.to_be_bytes());
    k
}

pub fn tracking_key(stream: u64, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + name.len());
    k.extend_from_slice(&stream.to_be_bytes());
    k.push(TRACKING);
    k.extend_from_slice(name);
    k
}

/// An entry's value: the bytes of the log before it, then the message record.
pub fn entry_value(bytes_before: u64, record: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + record.len());
    b.put_u64(bytes_before);
    b.put_slice(record);
    b.freeze()
}

/// A stored entry: its offset, the bytes of the log before it, and the message record.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub offset: u64,
    pub bytes_before: u64,
    pub record: Bytes,
}

impl StreamEntry {
    fn parse(key: &[u8], value: Bytes) -> Result<StreamEntry, StoreError> {
        let corrupt = || StoreError::Corrupt("stream entry too short".into());
        let offset = key.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(corrupt)?;
        let bytes_before =
            value.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(corrupt)?;
        Ok(StreamEntry { offset, bytes_before, record: value.slice(8..) })
    }
}

/// A segment as its metadata records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRecord {
    pub first: u64,
    pub first_ts: u64,
    pub bytes_before: u64,
    /// The timestamp of its last entry, once a newer segment took over (0 while active).
    pub last_ts: u64,
}

impl SegmentRecord {
    pub fn value(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(24);
        b.put_u64(self.first_ts);
        b.put_u64(self.bytes_before);
        b.put_u64(self.last_ts);
        b.freeze()
    }

    fn parse(key: &[u8], value: &[u8]) -> Option<SegmentRecord> {
        let num = |b: &[u8], at: usize| b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes);
        Some(SegmentRecord {
            first: num(key, 9)?,
            first_ts: num(value, 0)?,
            bytes_before: num(value, 8)?,
            last_ts: num(value, 16)?,
        })
    }
}

/// What start-up needs to know of a stream without reading its messages.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StreamRecovery {
    pub segments: Vec<SegmentRecord>,
    /// The last entry written, if any.
    pub last: Option<StreamEntry>,
    /// The first entry still there, if any.
    pub first: Option<StreamEntry>,
    /// Consumer name → last acked offset.
    pub tracked: Vec<(Bytes, u64)>,
}

impl Store {
    /// Up to `max` entries of a stream from `from` on (fewer at the end of the log), stopping
    /// once they hold `max_bytes` (at least one is read).
    pub fn stream_read(
        &self,
        stream: u64,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let (_, to) = queue_range(stream);
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(to);
        let start = entry_key(stream, from);
        let mut out = Vec::with_capacity(max.min(256));
        let iter = self.db.iterator_cf_opt(self.cf(CF_STREAMS), read, IteratorMode::From(&start, Direction::Forward));
        let mut bytes = 0;
        for item in iter.take(max) {
            let (k, v) = item?;
            bytes += v.len();
            out.push(StreamEntry::parse(&k, Bytes::from(v.into_vec()))?);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// One entry, if it is there.
    pub fn stream_entry(&self, stream: u64, offset: u64) -> Result<Option<StreamEntry>, StoreError> {
        let key = entry_key(stream, offset);
        match self.db.get_cf(self.cf(CF_STREAMS), key)? {
            Some(v) => Ok(Some(StreamEntry::parse(&key, Bytes::from(v))?)),
            None => Ok(None),
        }
    }

    /// The segment list, both ends and the tracked offsets of a stream.
    pub fn stream_recovery(&self, stream: u64) -> Result<StreamRecovery, StoreError> {
        let mut out = StreamRecovery::default();
        let (from, to) = queue_range(stream);
        let cf = self.cf(CF_STREAMS);
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(to);
        if let Some(item) = self.db.iterator_cf_opt(cf, read, IteratorMode::From(&from, Direction::Forward)).next() {
            let (k, v) = item?;
            out.first = Some(StreamEntry::parse(&k, Bytes::from(v.into_vec()))?);
        }
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(from);
        // The last possible key of this stream (`to` itself would be the next stream's first).
        let end = entry_key(stream, u64::MAX);
        if let Some(item) = self.db.iterator_cf_opt(cf, read, IteratorMode::From(&end, Direction::Reverse)).next() {
            let (k, v) = item?;
            if k.starts_with(&stream.to_be_bytes()) {
                out.last = Some(StreamEntry::parse(&k, Bytes::from(v.into_vec()))?);
            }
        }
        let meta = self.cf(CF_STREAM_META);
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(to);
        for item in self.db.iterator_cf_opt(meta, read, IteratorMode::From(&from, Direction::Forward)) {
            let (k, v) = item?;
            match k.get(8) {
                Some(&SEGMENT) => match SegmentRecord::parse(&k, &v) {
                    Some(s) => out.segments.push(s),
                    None => return Err(StoreError::Corrupt("stream segment record".into())),
                },
                Some(&TRACKING) => {
                    let offset = v.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
                    let offset = offset.ok_or_else(|| StoreError::Corrupt("tracked offset".into()))?;
                    out.tracked.push((Bytes::copy_from_slice(&k[9..]), offset));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The space the stream's entries take in the database files (RocksDB's estimate).
    pub fn stream_disk_size(&self, stream: u64) -> u64 {
        let (from, to) = queue_range(stream);
        let range = rocksdb::Range::new(&from, &to);
        self.db.get_approximate_sizes_cf(self.cf(CF_STREAMS), &[range]).first().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::writer::Op;
    use super::super::StoreHandle;
    use super::*;

    #[test]
    fn entries_segments_and_offsets_survive_a_reopen_and_retention_cuts_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (h, _) = StoreHandle::open(dir.path()).unwrap();
            let seg = |first, ts| SegmentRecord { first, first_ts: ts, bytes_before: first * 3, last_ts: 0 };
            h.writer.submit(Op::StreamSegment { stream: 5, record: seg(0, 100) });
            for offset in 0..10u64 {
                let value = entry_value(offset * 3, b"abc");
                h.writer.submit(Op::StreamAppend { stream: 5, offset, value, done: None, commit: None });
                if offset == 4 {
                    h.writer.submit(Op::StreamSegment { stream: 5, record: seg(5, 200) });
                }
            }
            // A neighbour's entries must not leak into stream 5's ends.
            h.writer.submit(Op::StreamAppend {
                stream: 6,
                offset: 0,
                value: entry_value(0, b"x"),
                done: None,
                commit: None,
            });
            h.writer.submit(Op::StreamTrack { stream: 5, name: Bytes::from_static(b"reader"), offset: 7 });
            h.writer.submit(Op::StreamTruncate { stream: 5, below: 5 });
            h.writer.flush();
        }
        let (h, _) = StoreHandle::open(dir.path()).unwrap();
        let r = h.store.stream_recovery(5).unwrap();
        assert_eq!(r.first.as_ref().map(|e| e.offset), Some(5));
        let last = r.last.unwrap();
        assert_eq!((last.offset, last.bytes_before, &last.record[..]), (9, 27, &b"abc"[..]));
        assert_eq!(r.segments.iter().map(|s| s.first).collect::<Vec<_>>(), vec![5]);
        assert_eq!(r.tracked, vec![(Bytes::from_static(b"reader"), 7)]);
        let read = h.store.stream_read(5, 3, 3, usize::MAX).unwrap();
        assert_eq!(read.iter().map(|e| e.offset).collect::<Vec<_>>(), vec![5, 6, 7]);
        assert_eq!(h.store.stream_entry(5, 4).unwrap(), None);
        assert_eq!(h.store.stream_read(5, 9, 10, usize::MAX).unwrap().len(), 1);
        assert_eq!(h.store.stream_read(5, 5, 10, 1).unwrap().len(), 1, "a byte budget still reads one");
        assert!(h.store.stream_recovery(7).unwrap().last.is_none());
    }
}
