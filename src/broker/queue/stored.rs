//! A durable queue's messages as the store keeps them: index entries, and bodies stored apart
//! (see `broker::record`). Reading them back whole, and recovering a queue at start-up from its
//! index without reading the bodies beyond the memory window.

use bytes::Bytes;

use super::paging::Recovered;
use super::{Queue, QueueStore};
use crate::broker::message::Message;
use crate::broker::record::{self, Entry};
use crate::store::{Location, StoreError, Stored};

/// Bodies read at a time while recovering the memory window.
const RECOVERY_BATCH: usize = 256;

/// What recovering a queue found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecoveredCount {
    pub messages: usize,
    /// Entries that could not be decoded, or whose body is missing: skipped.
    pub unreadable: usize,
}

impl QueueStore {
    /// Messages by sequence number, whole (`None` where missing or unreadable): persistent ones
    /// from the index and, where their body is stored apart, the bodies; paged-out transient
    /// ones (`transient`) from their own family, where they are whole records.
    pub fn read(&self, seqs: &[u64], transient: bool) -> Result<Vec<Option<Message>>, StoreError> {
        let entries: Vec<Option<Placed>> = (self.handle.store.read_messages(self.id, seqs, transient)?.into_iter())
            .map(|s| s.and_then(decode))
            .collect();
        self.whole(seqs, entries)
    }

    /// The messages of `entries` (those of `seqs`, in order, with their bodies' places) made
    /// whole: the bodies stored apart are read in one go.
    fn whole(&self, seqs: &[u64], entries: Vec<Option<Placed>>) -> Result<Vec<Option<Message>>, StoreError> {
        let apart: Vec<(u64, Option<Location>)> = (seqs.iter().zip(&entries))
            .filter_map(|(seq, e)| match e {
                Some((Entry::Header { .. }, at)) => Some((*seq, *at)),
                _ => None,
            })
            .collect();
        let entries = entries.into_iter().map(|e| e.map(|(entry, _)| entry)).collect();
        let bodies = if apart.is_empty() { Vec::new() } else { self.handle.store.read_bodies(self.id, &apart)? };
        Ok(with_bodies(entries, bodies))
    }
}

/// An index entry decoded, with its body's place when that is in a segment.
type Placed = (Entry, Option<Location>);

fn decode(stored: Stored) -> Option<Placed> {
    Some((record::decode_entry(&stored.entry)?, stored.body_at))
}

/// Joins header entries with their bodies (given in the order of the header entries).
fn with_bodies(entries: Vec<Option<Entry>>, bodies: Vec<Option<Bytes>>) -> Vec<Option<Message>> {
    let mut bodies = bodies.into_iter();
    entries
        .into_iter()
        .map(|e| match e? {
            header @ Entry::Header { .. } => header.with_body(bodies.next().flatten()),
            whole => whole.with_body(None),
        })
        .collect()
}

impl Queue {
    /// Puts back, in order, the persistent messages the store holds for this queue (start-up):
    /// the first `window` with their bodies, the rest as places whose bodies stay on disk —
    /// which, for bodies stored apart, are never read here.
    pub fn recover_from_store(&self, window: usize) -> Result<RecoveredCount, StoreError> {
        let Some(store) = &self.store else { return Ok(RecoveredCount::default()) };
        let args = self.args();
        let mut found = RecoveredCount::default();
        // Index entries within the memory window (sequence number, entry, delivered), waiting
        // for their bodies to be read in one go.
        let mut pending = Vec::new();
        let mut failed = None;
        let mark = store.handle.store.for_each_message(store.id, |seq, stored, delivered| {
            if failed.is_some() {
                return;
            }
            let entry = decode(stored);
            if found.messages + found.unreadable + pending.len() < window {
                pending.push((seq, entry, delivered));
                if pending.len() == RECOVERY_BATCH {
                    failed = self.recover_pending(store, &mut pending, &mut found).err();
                }
                return;
            }
            if !pending.is_empty() {
                failed = self.recover_pending(store, &mut pending, &mut found).err();
            }
            match entry {
                Some((entry, _)) => {
                    self.recover(seq, self.recovered_place(&args, &entry), delivered);
                    found.messages += 1;
                }
                None => found.unreadable += 1,
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.recover_pending(store, &mut pending, &mut found)?;
        if let Some(mark) = mark {
            self.number_above(mark);
        }
        Ok(found)
    }

    fn recover_pending(
        &self,
        store: &QueueStore,
        pending: &mut Vec<(u64, Option<Placed>, bool)>,
        found: &mut RecoveredCount,
    ) -> Result<(), StoreError> {
        let (places, entries): (Vec<(u64, bool)>, Vec<_>) =
            pending.drain(..).map(|(seq, e, delivered)| ((seq, delivered), e)).unzip();
        let seqs: Vec<u64> = places.iter().map(|(seq, _)| *seq).collect();
        for ((seq, delivered), msg) in places.into_iter().zip(store.whole(&seqs, entries)?) {
            match msg {
                Some(msg) => {
                    self.recover(seq, Recovered::Resident(msg), delivered);
                    found.messages += 1;
                }
                None => found.unreadable += 1,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::record::SPLIT_BODY;
    use crate::protocol::{BasicProperties, ShortStr};

    fn message(body: usize) -> Message {
        Message {
            exchange: ShortStr::from_static(""),
            routing_key: ShortStr::from_static("q"),
            properties: Box::new(BasicProperties { priority: Some(3), ..Default::default() }),
            body: Bytes::from(vec![7u8; body]),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn small_bodies_stay_in_the_entry_and_large_ones_are_joined_back() {
        let (small, large) = (message(SPLIT_BODY - 1), message(SPLIT_BODY));
        let entries = vec![
            record::decode_entry(&record::entry(&small)),
            record::decode_entry(&record::entry(&large)),
            None,
            record::decode_entry(&record::entry(&large)),
        ];
        assert!(matches!(entries[0], Some(Entry::Whole(_))));
        // A record stored whole by an earlier version reads back as a whole entry, whatever its size.
        assert!(matches!(record::decode_entry(&record::encode(&large)), Some(Entry::Whole(m)) if m == large));
        assert!(matches!(&entries[1], Some(e @ Entry::Header { .. }) if e.body_len() == SPLIT_BODY));
        // The second large message's body is missing, so it is unreadable, not half a message.
        let joined = with_bodies(entries, vec![Some(large.body.clone()), None]);
        assert_eq!(joined, vec![Some(small), Some(large), None, None]);
    }
}
