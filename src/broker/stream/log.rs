//! A stream's shape in memory: where it starts and ends, what is durable, and its segments —
//! never its messages. Retention decides here which whole segments go.

use std::collections::VecDeque;

use crate::store::streams::SegmentRecord;

/// How long and how large a stream may grow, and how it is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<u64>,
    pub segment_size: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogIndex {
    /// The oldest offset retained.
    pub first: u64,
    /// The offset the next message gets.
    pub next: u64,
    /// Offsets below this are on disk (synced): only they are delivered, so that no consumer
    /// ever sees an offset a crash could give to another message.
    pub committed: u64,
    /// Bytes appended since the stream began (the bytes before `next`).
    pub bytes: u64,
    /// When the newest message arrived.
    pub last_ts: u64,
    pub segments: VecDeque<SegmentRecord>,
}

/// What an append changed in the segment list: the metadata to write.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rolled {
    /// The segment that was active, now sealed with its last timestamp.
    pub sealed: Option<SegmentRecord>,
    /// The new active segment.
    pub opened: Option<SegmentRecord>,
}

impl LogIndex {
    /// Takes the next offset for a message of `size` bytes that arrived at `ts`; opens a new
    /// segment first when the active one is full (or there is none).
    pub fn append(&mut self, size: u64, ts: u64, segment_size: u64) -> (u64, Rolled) {
        let offset = self.next;
        let mut rolled = Rolled::default();
        let full = match self.segments.back() {
            None => true,
            Some(active) => offset > active.first && self.bytes - active.bytes_before >= segment_size,
        };
        if full {
            if let Some(active) = self.segments.back_mut() {
                active.last_ts = self.last_ts;
                rolled.sealed = Some(*active);
            }
            let opened = SegmentRecord { first: offset, first_ts: ts, bytes_before: self.bytes, last_ts: 0 };
            self.segments.push_back(opened);
            rolled.opened = Some(opened);
        }
        self.next += 1;
        self.bytes += size;
        self.last_ts = self.last_ts.max(ts);
        (offset, rolled)
    }

    /// Bytes of the retained messages.
    pub fn retained_bytes(&self) -> u64 {
        self.segments.front().map_or(0, |s| self.bytes - s.bytes_before)
    }

    pub fn message_count(&self) -> u64 {
        self.next - self.first
    }

    /// Drops the oldest segments the retention settings no longer keep — whole segments, never
    /// the active one, as RabbitMQ does. Returns the new first offset if it moved.
    pub fn retain(&mut self, retention: &Retention, now: u64) -> Option<u64> {
        let before = self.first;
        while self.segments.len() > 1 {
            let oldest = self.segments[0];
            let too_big = retention.max_bytes.is_some_and(|max| self.retained_bytes() > max);
            let too_old = retention.max_age_ms.is_some_and(|age| oldest.last_ts.saturating_add(age) < now);
            if !(too_big || too_old) {
                break;
            }
            self.segments.pop_front();
        }
        self.first = self.first.max(self.segments.front().map_or(self.next, |s| s.first));
        (self.first != before).then_some(self.first)
    }

    /// The offsets to search for the first message at or after `ts`: from the start of the
    /// last segment that began at or before it to the start of the one after. `None`: every
    /// retained message is at least that recent.
    pub fn search_range(&self, ts: u64) -> Option<(u64, u64)> {
        let at = self.segments.partition_point(|s| s.first_ts <= ts);
        if at == 0 {
            return None;
        }
        let from = self.segments[at - 1].first.max(self.first);
        let to = self.segments.get(at).map_or(self.next, |s| s.first);
        Some((from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(max_bytes: Option<u64>, max_age_ms: Option<u64>) -> Retention {
        Retention { max_bytes, max_age_ms, segment_size: 100 }
    }

    #[test]
    fn segments_roll_when_full_and_retention_cuts_whole_segments() {
        let mut log = LogIndex::default();
        let mut opened = Vec::new();
        for i in 0..25u64 {
            let (offset, rolled) = log.append(30, 1000 + i, 100);
            assert_eq!(offset, i);
            if let Some(s) = rolled.opened {
                opened.push(s.first);
            }
        }
        // 30-byte messages: a segment takes four before it holds 100 bytes or more.
        assert_eq!(opened, vec![0, 4, 8, 12, 16, 20, 24]);
        assert_eq!(log.retained_bytes(), 750);
        // Keep at most 200 bytes: segments go until what is left fits, the active one stays.
        assert_eq!(log.retain(&retention(Some(200), None), 0), Some(20));
        assert_eq!((log.first, log.message_count(), log.retained_bytes()), (20, 5, 150));
        assert_eq!(log.retain(&retention(Some(0), None), 0), Some(24), "all but the active segment");
        assert_eq!(log.retain(&retention(Some(0), None), 0), None);
    }

    #[test]
    fn age_counts_from_a_segments_last_message() {
        let mut log = LogIndex::default();
        for i in 0..8u64 {
            log.append(50, i * 1000, 100);
        }
        // Segments: [0,1] last at 1000, [2,3] last at 3000, [4,5] last 5000, [6,7] active.
        assert_eq!(log.retain(&retention(None, Some(2500)), 4000), Some(2));
        assert_eq!(log.retain(&retention(None, Some(2500)), 4000), None);
        assert_eq!(log.retain(&retention(None, Some(1)), u64::MAX), Some(6));
    }

    #[test]
    fn time_search_picks_the_segment() {
        let mut log = LogIndex::default();
        for i in 0..6u64 {
            log.append(50, 100 + i * 10, 100);
        }
        assert_eq!(log.search_range(50), None);
        assert_eq!(log.search_range(100), Some((0, 2)));
        assert_eq!(log.search_range(125), Some((2, 4)));
        assert_eq!(log.search_range(999), Some((4, 6)));
    }
}
