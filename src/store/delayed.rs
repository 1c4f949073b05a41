//! Messages held by delayed-message exchanges.
//!
//! Two column families, both keyed `due ‖ seq`: the due time in milliseconds since the Unix
//! epoch and a sequence number unique to the message, each a big-endian `u64`. Keys sort by due
//! time, so the earliest held message is the first key and the ones due by a time are one
//! bounded range: the scheduler needs no index in memory however many messages are held.
//!
//! - `delayed`: messages of durable exchanges. Written with a WAL sync through the group-commit
//!   writer before the publish is confirmed; they survive restarts and crashes.
//! - `delayed_transient`: messages of transient exchanges (which do not survive a restart
//!   themselves). Never synced; emptied at start-up.
//!
//! The value is the vhost, the exchange holding the message, the extra routing keys of
//! sender-selected distribution (CC/BCC), then the message record ([`super::messages`]), which
//! already carries `x-delay` negated as delivered: a durable queue it reaches stores that same
//! record, without encoding it again.
//!
//! Due time 0 is never a real one: key `0 ‖ 0` of `delayed` holds the boot counter, the upper 24
//! bits of every sequence number, so numbers from one run never collide with those left by an
//! earlier run (2^40 messages per run before the counter would spill into the next run's range).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use super::{Store, StoreError};
use crate::protocol::wire;
use crate::protocol::ShortStr;

pub const CF_DELAYED: &str = "delayed";
pub const CF_DELAYED_TRANSIENT: &str = "delayed_transient";

/// The key of a held message: due time (ms since the Unix epoch), then a unique number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DelayKey {
    pub due: u64,
    pub seq: u64,
}

impl DelayKey {
    /// Where the boot counter is kept (never a message: no message is due at the epoch).
    pub const META: DelayKey = DelayKey { due: 0, seq: 0 };
    /// The smallest key a message can have.
    pub const FIRST: DelayKey = DelayKey { due: 1, seq: 0 };

    pub fn encode(self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.due.to_be_bytes());
        k[8..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }

    pub fn decode(key: &[u8]) -> Option<DelayKey> {
        let key: &[u8; 16] = key.try_into().ok()?;
        let (due, seq) = key.split_at(8);
        Some(DelayKey { due: u64::from_be_bytes(due.try_into().ok()?), seq: u64::from_be_bytes(seq.try_into().ok()?) })
    }

    /// The next key in sort order.
    pub fn successor(self) -> DelayKey {
        match self.seq.checked_add(1) {
            Some(seq) => DelayKey { due: self.due, seq },
            None => DelayKey { due: self.due.saturating_add(1), seq: 0 },
        }
    }
}

/// Bits of a sequence number below the boot counter.
pub const SEQ_BITS_PER_BOOT: u32 = 40;

/// A held message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DelayedRecord {
    pub vhost: ShortStr,
    pub exchange: ShortStr,
    /// CC/BCC routing keys (BCC is no longer in the message's headers).
    pub extra_keys: Vec<Bytes>,
    /// the broker's record encoding of the message as it is to be delivered.
    pub record: Bytes,
}

pub fn encode_value(vhost: &ShortStr, exchange: &ShortStr, extra_keys: &[&[u8]], record: &[u8]) -> Bytes {
    let keys_len: usize = extra_keys.iter().map(|k| 4 + k.len()).sum();
    let mut v = BytesMut::with_capacity(2 + vhost.len() + exchange.len() + 4 + keys_len + record.len());
    wire::put_shortstr(&mut v, vhost);
    wire::put_shortstr(&mut v, exchange);
    v.put_u32(extra_keys.len() as u32);
    for k in extra_keys {
        v.put_u32(k.len() as u32);
        v.put_slice(k);
    }
    v.put_slice(record);
    v.freeze()
}

/// `None` when the value is not one [`encode_value`] wrote. The record is a slice of `value`.
pub fn decode_value(value: &Bytes) -> Option<DelayedRecord> {
    let (rest, vhost) = wire::shortstr(value, value).ok()?;
    let (rest, exchange) = wire::shortstr(value, rest).ok()?;
    let mut rest = rest;
    if rest.len() < 4 {
        return None;
    }
    let n = rest.get_u32() as usize;
    let mut extra_keys = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        if rest.len() < 4 {
            return None;
        }
        let len = rest.get_u32() as usize;
        let key = rest.get(..len)?;
        extra_keys.push(value.slice_ref(key));
        rest = &rest[len..];
    }
    Some(DelayedRecord { vhost, exchange, extra_keys, record: value.slice_ref(rest) })
}

impl Store {
    fn delayed_cf(&self, transient: bool) -> &rocksdb::ColumnFamily {
        self.cf(if transient { CF_DELAYED_TRANSIENT } else { CF_DELAYED })
    }

    /// Counts this start-up and returns the count (the first run gets 1), synced.
    pub fn next_delayed_boot(&self) -> Result<u64, StoreError> {
        let cf = self.delayed_cf(false);
        let key = DelayKey::META.encode();
        let previous = match self.db.get_cf(cf, key)? {
            Some(v) => u64::from_be_bytes(
                v.as_slice().try_into().map_err(|_| StoreError::Corrupt("delayed boot counter".into()))?,
            ),
            None => 0,
        };
        let boot = previous + 1;
        let mut b = WriteBatch::default();
        b.put_cf(cf, key, boot.to_be_bytes());
        self.write(b)?;
        Ok(boot)
    }

    /// The first held message at or after `from`.
    pub fn first_delayed(&self, transient: bool, from: DelayKey) -> Result<Option<DelayKey>, StoreError> {
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(from.encode());
        let start = from.encode();
        let mut it =
            self.db.iterator_cf_opt(self.delayed_cf(transient), read, IteratorMode::From(&start, Direction::Forward));
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item?;
                DelayKey::decode(&k).map(Some).ok_or_else(|| StoreError::Corrupt("delayed message key".into()))
            }
        }
    }

    /// Up to `limit` held messages from `from` on that are due at `through_ms` or earlier, in key
    /// order. Keys that are not 16 octets are skipped (logged).
    pub fn due_delayed(
        &self,
        transient: bool,
        from: DelayKey,
        through_ms: u64,
        limit: usize,
    ) -> Result<Vec<(DelayKey, Bytes)>, StoreError> {
        let start = from.encode();
        let end = DelayKey { due: through_ms.saturating_add(1), seq: 0 }.encode();
        if start >= end {
            return Ok(Vec::new());
        }
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(start);
        read.set_iterate_upper_bound(end);
        let mut out = Vec::new();
        for item in
            self.db.iterator_cf_opt(self.delayed_cf(transient), read, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            match DelayKey::decode(&k) {
                Some(key) => out.push((key, Bytes::from(v.into_vec()))),
                None => tracing::error!(key = ?k, "delayed message with a malformed key skipped"),
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Keys of the messages held for exchanges of `vhost` (deleting the vhost drops them). Reads
    /// every held message: a rare administrative act, not a routing path.
    pub fn delayed_of_vhost(&self, transient: bool, vhost: &ShortStr) -> Result<Vec<DelayKey>, StoreError> {
        let start = DelayKey::FIRST.encode();
        let mut keys = Vec::new();
        for item in self.db.iterator_cf(self.delayed_cf(transient), IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item?;
            let value = Bytes::from(v.into_vec());
            match (DelayKey::decode(&k), decode_value(&value)) {
                (Some(key), Some(r)) if r.vhost == *vhost => keys.push(key),
                _ => {}
            }
        }
        Ok(keys)
    }

    /// Held messages in the store (both families; counts every key: for tests and start-up
    /// figures on small stores).
    pub fn count_delayed(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for transient in [false, true] {
            let start = DelayKey::FIRST.encode();
            for item in self.db.iterator_cf(self.delayed_cf(transient), IteratorMode::From(&start, Direction::Forward))
            {
                item?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_due_time_then_sequence() {
        let keys = [
            DelayKey { due: 1, seq: 0 },
            DelayKey { due: 1, seq: u64::MAX },
            DelayKey { due: 2, seq: 5 },
            DelayKey { due: 256, seq: 0 },
            DelayKey { due: 1_700_000_000_000, seq: 1 << 40 },
            DelayKey { due: u64::MAX, seq: 0 },
        ];
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].encode() < pair[1].encode(), "byte order follows {:?} < {:?}", pair[0], pair[1]);
        }
        for k in keys {
            assert_eq!(DelayKey::decode(&k.encode()), Some(k));
        }
        assert_eq!(DelayKey::decode(b"short"), None);
        assert_eq!(DelayKey { due: 7, seq: u64::MAX }.successor(), DelayKey { due: 8, seq: 0 });
        assert_eq!(DelayKey { due: 7, seq: 3 }.successor(), DelayKey { due: 7, seq: 4 });
        assert_eq!(
            DelayKey { due: 0x0102, seq: 0x0a0b }.encode(),
            [0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b],
            "big-endian due then seq"
        );
        assert!(DelayKey::META < DelayKey::FIRST);
    }

    #[test]
    fn values_round_trip_and_garbage_is_refused() {
        let (v, x) = (ShortStr::from_static("/"), ShortStr::from_static("delays"));
        let value = encode_value(&v, &x, &[b"cc.1", b""], b"the record");
        let r = decode_value(&value).unwrap();
        assert_eq!((r.vhost, r.exchange), (v.clone(), x.clone()));
        assert_eq!(r.extra_keys, [Bytes::from_static(b"cc.1"), Bytes::new()]);
        assert_eq!(r.record, Bytes::from_static(b"the record"));
        let none = decode_value(&encode_value(&v, &x, &[], b"")).unwrap();
        assert!(none.extra_keys.is_empty() && none.record.is_empty());
        for bad in [&b""[..], b"\x05ab", b"\x01/\x01x\x00\x00", b"\x01/\x01x\x00\x00\x00\x01\x00\x00\x00\x09ab"] {
            assert_eq!(decode_value(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn due_ranges_and_the_boot_counter() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.next_delayed_boot().unwrap(), 1);
        assert_eq!(s.next_delayed_boot().unwrap(), 2);
        let mut b = WriteBatch::default();
        for (due, seq) in [(30, 1), (10, 2), (20, 3), (10, 1)] {
            b.put_cf(s.delayed_cf(false), DelayKey { due, seq }.encode(), format!("{due}/{seq}"));
        }
        b.put_cf(s.delayed_cf(true), DelayKey { due: 15, seq: 9 }.encode(), "t");
        s.write(b).unwrap();
        assert_eq!(s.first_delayed(false, DelayKey::FIRST).unwrap(), Some(DelayKey { due: 10, seq: 1 }));
        assert_eq!(s.first_delayed(false, DelayKey { due: 10, seq: 2 }.successor()).unwrap().map(|k| k.due), Some(20));
        assert_eq!(s.first_delayed(true, DelayKey::FIRST).unwrap(), Some(DelayKey { due: 15, seq: 9 }));
        let due = s.due_delayed(false, DelayKey::FIRST, 20, 100).unwrap();
        let keys: Vec<_> = due.iter().map(|(k, _)| (k.due, k.seq)).collect();
        assert_eq!(keys, [(10, 1), (10, 2), (20, 3)], "the boot counter is not a message");
        assert_eq!(due[2].1, Bytes::from_static(b"20/3"));
        assert_eq!(s.due_delayed(false, DelayKey::FIRST, 20, 2).unwrap().len(), 2, "limited");
        assert!(s.due_delayed(false, DelayKey { due: 25, seq: 0 }, 20, 9).unwrap().is_empty());
        assert_eq!(s.count_delayed().unwrap(), 5);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.count_delayed().unwrap(), 4, "transient ones are gone after a restart");
        assert_eq!(s.next_delayed_boot().unwrap(), 3);
    }

    #[test]
    fn held_messages_of_a_vhost() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (a, b, x) = (ShortStr::from_static("a"), ShortStr::from_static("b"), ShortStr::from_static("x"));
        let mut batch = WriteBatch::default();
        for (due, vhost, transient) in [(10, &a, false), (11, &b, false), (12, &a, false), (13, &a, true)] {
            let key = DelayKey { due, seq: 1 }.encode();
            batch.put_cf(s.delayed_cf(transient), key, encode_value(vhost, &x, &[], b"r"));
        }
        s.write(batch).unwrap();
        let dues = |t, v| s.delayed_of_vhost(t, v).unwrap().into_iter().map(|k| k.due).collect::<Vec<_>>();
        assert_eq!(dues(false, &a), [10, 12]);
        assert_eq!(dues(true, &a), [13]);
        assert_eq!(dues(false, &b), [11]);
        assert!(dues(true, &b).is_empty());
    }
}
