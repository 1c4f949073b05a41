//! Paging: beyond its memory window a queue keeps only the places of its messages, their
//! bodies in the store, and reads them back in batches as the head comes near. Recovery puts
//! stored messages back the same way.
//!
//! `page_in` reads RocksDB under the queue lock (and, for a body whose write is still queued,
//! waits once for the writer): see LOCKS.md for why that stays under the lock.

use std::sync::Arc;

use bytes::Bytes;

use super::ready::Ready;
use super::{Queue, QueueArgs, QueueState, QueuedMessage};
use crate::broker::dedup::identity;
use crate::broker::message::Message;
use crate::broker::record::{self, Entry};
use crate::store::writer::Op;

/// Bodies read back from the store at a time when the head of a queue reaches paged messages.
const PAGE_IN_BATCH: usize = 256;

/// A message read back from the store at start-up.
pub enum Recovered {
    Resident(Message),
    Paged { size: u32, priority: Option<u8>, expires_at: Option<u64>, identity: Option<Bytes> },
}

impl Queue {
    /// Puts back one message recovered from the store (called in queue order): with its body,
    /// or (beyond the memory window) as a place whose body stays on disk.
    pub fn recover(&self, seq: u64, message: Recovered, delivered: bool) {
        let mut st = self.lock();
        st.next_seq = st.next_seq.max(seq + 1);
        match message {
            Recovered::Resident(msg) => {
                self.hold_identity(seq, self.held.as_ref().and_then(|_| identity(msg.headers())));
                let level = st.ready.level_of(msg.properties.priority);
                let expires_at = st.args.expiry_of(&msg);
                let deliveries = u32::from(delivered);
                let m = QueuedMessage {
                    seq,
                    msg: Arc::new(msg),
                    redelivered: delivered,
                    persisted: true,
                    expires_at,
                    deliveries,
                };
                st.ready.push_back(level, Ready::Resident(m));
            }
            Recovered::Paged { size, priority, expires_at, identity } => {
                self.hold_identity(seq, identity);
                let level = st.ready.level_of(priority);
                let paged = Ready::Paged { seq, redelivered: delivered, persisted: true, expires_at, size };
                st.ready.push_back(level, paged);
            }
        }
    }

    /// New messages are numbered above `seq` (recovery: the queue's delivered mark).
    pub fn number_above(&self, seq: u64) {
        let mut st = self.lock();
        st.next_seq = st.next_seq.max(seq.saturating_add(1));
    }

    /// What recovery keeps of a message beyond the memory window: enough to queue it in the
    /// right place and expire it on time, without its body. `args` are the queue's (read once
    /// for the whole recovery, not once per message).
    pub fn recovered_place(&self, args: &QueueArgs, entry: &Entry) -> Recovered {
        let msg = entry.message();
        Recovered::Paged {
            size: entry.body_len() as u32,
            priority: msg.properties.priority,
            expires_at: args.expiry_of(msg),
            identity: self.held.as_ref().and_then(|_| identity(msg.headers())),
        }
    }

    pub(super) fn memory_window(&self) -> usize {
        match (&self.store, &self.env) {
            (Some(_), Some(env)) => env.paging.window,
            _ => usize::MAX,
        }
    }

    /// Messages whose bodies are in memory (the rest are in the store).
    pub fn resident_count(&self) -> usize {
        self.lock().ready.resident()
    }

    pub(super) fn forget_paged(&self, seq: u64, persisted: bool, size: u32) {
        self.release_identity(seq);
        if let Some(s) = &self.store {
            let op = if persisted {
                Op::Delete { queue: s.id, seq, split: record::is_split(size as usize) }
            } else {
                Op::DeleteTransient { queue: s.id, seq }
            };
            s.handle.writer.submit(op);
        }
    }

    /// Reads the bodies of the paged messages nearest the head of `level` back from the store.
    /// A body not found is first waited for (its write may still be queued in the writer); one
    /// still missing after that is dropped, loudly.
    pub(super) fn page_in(&self, st: &mut QueueState, level: usize) {
        let Some(store) = &self.store else { return };
        st.ready.unroll(level, PAGE_IN_BATCH);
        let positions: Vec<usize> = st
            .ready
            .singles(level)
            .filter(|(_, r)| matches!(r, Ready::Paged { .. }))
            .map(|(i, _)| i)
            .take(PAGE_IN_BATCH)
            .collect();
        if positions.is_empty() {
            return;
        }
        // Persistent and transient bodies live in different column families: one read each.
        let read = |st: &QueueState| -> Vec<Option<Message>> {
            let mut out = vec![None; positions.len()];
            for transient in [false, true] {
                let (slots, seqs): (Vec<usize>, Vec<u64>) = positions
                    .iter()
                    .enumerate()
                    .filter_map(|(slot, &i)| match st.ready.single(level, i) {
                        Some(&Ready::Paged { seq, persisted, .. }) if persisted != transient => Some((slot, seq)),
                        _ => None,
                    })
                    .unzip();
                if seqs.is_empty() {
                    continue;
                }
                match store.read(&seqs, transient) {
                    Ok(messages) => slots.into_iter().zip(messages).for_each(|(slot, r)| out[slot] = r),
                    Err(e) => tracing::error!(queue = %self.name, error = %e, "reading paged messages failed"),
                }
            }
            out
        };
        let mut messages = read(st);
        if messages.iter().any(Option::is_none) {
            // The writes may still be queued in the writer: wait for them once.
            store.handle.writer.flush();
            messages = read(st);
        }
        let mut lost = Vec::new();
        for (&i, msg) in positions.iter().zip(messages) {
            let Some(&Ready::Paged { seq, redelivered, persisted, .. }) = st.ready.single(level, i) else { continue };
            match msg {
                Some(msg) => {
                    if !persisted {
                        // Back in memory: the paged copy is not needed any more.
                        store.handle.writer.submit(Op::DeleteTransient { queue: store.id, seq });
                    }
                    let expires_at = st.args.expiry_of(&msg);
                    let deliveries = u32::from(redelivered);
                    let m = QueuedMessage { seq, msg: Arc::new(msg), redelivered, persisted, expires_at, deliveries };
                    st.ready.make_resident(level, i, m);
                }
                None => lost.push(i),
            }
        }
        for i in lost.into_iter().rev() {
            if let Some(r) = st.ready.remove(level, i) {
                tracing::error!(queue = %self.name, seq = r.seq(), "a paged message is missing from the store");
            }
        }
    }

    /// Makes the head resident; false when the queue is empty.
    pub(super) fn head_resident(&self, st: &mut QueueState) -> bool {
        while let Some(level) = st.ready.head_level() {
            if !matches!(st.ready.front_of(level), Some(Ready::Paged { .. })) {
                return true;
            }
            self.page_in(st, level);
            if matches!(st.ready.front_of(level), Some(Ready::Resident(_))) {
                return true;
            }
            // Everything read back was missing (and dropped); look again.
        }
        false
    }
}
