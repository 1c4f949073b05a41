//! The group-commit writer: one thread owns RocksDB writes of messages.
//!
//! Publishing connections and channels hand it operations without waiting. It takes everything
//! that has queued up since its last write, appends the bodies it carries to a segment
//! ([`super::segments`]) and applies the rest as one `WriteBatch`, syncs once what needs
//! durability (the segment, and the WAL only when the batch holds something durable besides
//! bodies), and only then runs the completions (publisher confirms). Under load batches grow by
//! themselves; idle, a lone publish is written at once — no timer adds latency.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use rocksdb::{WriteBatch, WriteOptions};

use crate::counters::Histogram;

use super::backlog::Backlog;
use super::delayed::{CF_DELAYED, CF_DELAYED_TRANSIENT};
use super::messages::delivered_mark_key;
use super::segments;
use super::streams::{self, SegmentRecord, CF_STREAMS, CF_STREAM_META};
use super::{message_key, queue_range, Store, CF_BODIES, CF_DELIVERED, CF_MESSAGES, CF_TRANSIENT, CHECKPOINT_KEY};

/// Runs once the operation it came with is durable (`Ok`) or failed (`Err`, with the reason).
pub type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The completion of a write nobody waits for (no confirm, no commit): it does not allocate.
pub fn unawaited() -> Completion {
    Box::new(|_| {})
}

/// Told when a stream's appends are durable: once per stream and batch, with the highest offset
/// the batch wrote (offsets are submitted in order, so everything below it is written too).
pub trait StreamCommit: Send + Sync {
    fn committed(&self, up_to: u64, result: Result<(), String>);
}

pub enum Op {
    /// A persistent message enqueued in a durable queue: its index entry, and its body when
    /// that is stored apart (in a segment); synced before its completion runs.
    Put { queue: u64, seq: u64, record: Bytes, body: Option<Bytes>, done: Option<Completion> },
    /// Acked, rejected, or delivered without ack: the message is gone (`split`: its body was
    /// stored apart).
    Delete { queue: u64, seq: u64, split: bool },
    /// Delivered and awaiting an ack: after a crash it comes back `redelivered`.
    Delivered { queue: u64, seq: u64 },
    /// Purge or queue deletion.
    DeleteQueue { queue: u64 },
    /// A transient message's body paged out of memory (not synced; wiped at start-up).
    PutTransient { queue: u64, seq: u64, record: Bytes },
    /// A paged-out transient message is gone.
    DeleteTransient { queue: u64, seq: u64 },
    /// A message held by a delayed exchange (key and value as in [`super::delayed`]). Synced
    /// unless `transient` (held by a transient exchange: wiped at start-up anyway).
    PutDelayed { key: [u8; 16], value: Bytes, transient: bool, done: Option<Completion> },
    /// A held message was routed (or dropped): it is no longer held.
    DeleteDelayed { key: [u8; 16], transient: bool },
    /// An entry appended to a stream (see [`super::streams`]); synced before `done` runs and
    /// `commit` hears of it.
    StreamAppend {
        stream: u64,
        offset: u64,
        value: Bytes,
        done: Option<Completion>,
        commit: Option<Arc<dyn StreamCommit>>,
    },
    /// A stream segment's metadata (a new one, or one sealed with its last timestamp).
    StreamSegment { stream: u64, record: SegmentRecord },
    /// Retention: the entries and segments of a stream below `below` are gone.
    StreamTruncate { stream: u64, below: u64 },
    /// Server-side offset tracking: the offset a named consumer acked last.
    StreamTrack { stream: u64, name: Bytes, offset: u64 },
    /// Runs once everything submitted before it is written and synced (shutdown, tests).
    Barrier(Completion),
    /// Operations handed over together (see [`super::deferred`]).
    Many(Vec<Op>),
}

/// Called on the writer thread before and after a batch's completions run (the server's, so
/// that the confirms of one batch leave together: `server::read_batch`). Set once.
static COMPLETION_SCOPE: std::sync::OnceLock<CompletionScope> = std::sync::OnceLock::new();

/// What runs before and after a batch's completions.
type CompletionScope = (fn(), fn());

pub fn set_completion_scope(begin: fn(), end: fn()) {
    let _ = COMPLETION_SCOPE.set((begin, end));
}

/// Most operations folded into one batch; bounds the latency of the last one in it.
const MAX_BATCH: usize = 4096;

/// Upper bounds of the batch size histogram (operations per write).
pub static BATCH_SIZE_BOUNDS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 256, 1024, 4096];
/// Upper bounds of the write latency histogram, in microseconds (50 µs to 5 s).
pub static WRITE_LATENCY_BOUNDS_US: [u64; 13] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000, 5_000_000];

/// What the writer measures of its group commits (Prometheus): observed once per batch on the
/// writer thread, so they cost nothing per message.
pub struct WriterStats {
    /// Operations folded into each batch.
    pub batch_size: Histogram,
    /// How long each synced batch took to write and sync its WAL, in microseconds.
    pub sync_latency_us: Histogram,
}

impl Default for WriterStats {
    fn default() -> WriterStats {
        WriterStats {
            batch_size: Histogram::new(&BATCH_SIZE_BOUNDS),
            sync_latency_us: Histogram::new(&WRITE_LATENCY_BOUNDS_US),
        }
    }
}

pub struct StoreWriter {
    /// `None` once closed: the thread then finishes what it has and exits.
    tx: Option<Sender<Op>>,
    stats: Arc<WriterStats>,
    backlog: Arc<Backlog>,
}

impl Op {
    /// Bytes of message data the operation carries to the disk (what the backlog counts).
    fn payload(&self) -> u64 {
        let n = match self {
            Op::Put { record, body, .. } => record.len() + body.as_ref().map_or(0, Bytes::len),
            Op::PutTransient { record, .. } => record.len(),
            Op::PutDelayed { value, .. } | Op::StreamAppend { value, .. } => value.len(),
            Op::Many(ops) => return ops.iter().map(Op::payload).sum(),
            _ => 0,
        };
        n as u64
    }
}

impl StoreWriter {
    pub fn start(store: Arc<Store>) -> (StoreWriter, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let backlog = Arc::new(Backlog::default());
        let (for_thread, backlog_for_thread) = (stats.clone(), backlog.clone());
        let thread = std::thread::Builder::new()
            .name("warren-store-writer".into())
            .spawn(move || run(store, rx, &for_thread, &backlog_for_thread))
            .expect("spawn the store writer thread");
        (StoreWriter { tx: Some(tx), stats, backlog }, thread)
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// What is queued for the disk, for publishers to wait on when it is too much.
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    /// Queues an operation. If the writer is gone (shutting down), a completion is told so.
    pub fn submit(&self, op: Op) {
        match &self.tx {
            Some(tx) => {
                let Some(op) = super::deferred::hold(&self.backlog, tx, op) else { return };
                let payload = op.payload();
                self.backlog.queued(payload);
                if let Err(mpsc::SendError(op)) = tx.send(op) {
                    self.backlog.written(payload);
                    fail(op, "the store is shut down");
                }
            }
            None => fail(op, "the store is shut down"),
        }
    }

    /// Stops accepting operations; the thread writes what it has, then exits.
    pub fn close(&mut self) {
        self.tx = None;
    }

    /// Waits until everything submitted so far is on disk.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        self.submit(Op::Barrier(Box::new(move |_| {
            let _ = tx.send(());
        })));
        let _ = rx.recv();
    }
}

fn fail(op: Op, why: &str) {
    match op {
        Op::Many(ops) => ops.into_iter().for_each(|op| fail(op, why)),
        Op::Put { done: Some(done), .. } | Op::PutDelayed { done: Some(done), .. } | Op::Barrier(done) => {
            done(Err(why.to_string()))
        }
        Op::StreamAppend { offset, done, commit, .. } => {
            if let Some(done) = done {
                done(Err(why.to_string()));
            }
            if let Some(commit) = commit {
                commit.committed(offset, Err(why.to_string()));
            }
        }
        _ => {}
    }
}

fn run(store: Arc<Store>, rx: Receiver<Op>, stats: &WriterStats, backlog: &Backlog) {
    let mut ops: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    let mut marks_written = HashMap::new();
    let take = |ops: &mut Vec<Op>, op: Op| match op {
        Op::Many(many) => ops.extend(many),
        op => ops.push(op),
    };
    while let Ok(first) = rx.recv() {
        take(&mut ops, first);
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => take(&mut ops, op),
                Err(_) => break,
            }
        }
        stats.batch_size.observe(ops.len() as u64);
        let payload = ops.iter().map(Op::payload).sum();
        write_batch(&store, &mut ops, stats, &mut marks_written);
        backlog.written(payload);
    }
}

/// Messages by queue and sequence number (foldhash: SipHash showed in the drain's profile).
type Settled = HashSet<(u64, u64), foldhash::fast::RandomState>;

/// The messages written and deleted within one batch — acked (or dead-lettered) before their
/// write came round: neither the write nor the delete needs to reach the disk, and their
/// confirms go out with the batch all the same.
fn settled_in_batch(ops: &[Op]) -> Settled {
    let mut settled = Settled::default();
    let has = |f: fn(&Op) -> bool| ops.iter().any(f);
    if ops.len() < 2 || !has(|op| matches!(op, Op::Delete { .. })) || !has(|op| matches!(op, Op::Put { .. })) {
        return settled;
    }
    let mut put = Settled::default();
    for op in ops {
        match op {
            Op::Put { queue, seq, .. } => {
                put.insert((*queue, *seq));
            }
            Op::Delete { queue, seq, .. } if put.contains(&(*queue, *seq)) => {
                settled.insert((*queue, *seq));
            }
            _ => {}
        }
    }
    settled
}

/// The highest sequence number delivered per queue in a batch: one mark each (see
/// `store::messages`).
#[derive(Default)]
struct DeliveredMarks(Vec<(u64, u64)>);

impl DeliveredMarks {
    fn raise(&mut self, queue: u64, seq: u64) {
        match self.0.iter_mut().find(|(q, _)| *q == queue) {
            Some((_, at)) => *at = (*at).max(seq),
            None => self.0.push((queue, seq)),
        }
    }

    /// Puts the marks that are higher than what the queue's mark already is. A priority queue
    /// delivers out of order: a mark must never go down.
    fn write(self, batch: &mut WriteBatch, cf: &rocksdb::ColumnFamily, written: &mut HashMap<u64, u64>) {
        for (queue, seq) in self.0 {
            if written.get(&queue).is_none_or(|&at| seq > at) {
                written.insert(queue, seq);
                batch.put_cf(cf, delivered_mark_key(queue), seq.to_be_bytes());
            }
        }
    }
}

/// `marks_written`: each queue's delivered mark as this writer last put it.
pub(super) fn write_batch(
    store: &Store,
    ops: &mut Vec<Op>,
    stats: &WriterStats,
    marks_written: &mut HashMap<u64, u64>,
) {
    let (messages, bodies) = (store.cf(CF_MESSAGES), store.cf(CF_BODIES));
    let (delivered, transient) = (store.cf(CF_DELIVERED), store.cf(CF_TRANSIENT));
    let delayed = |transient: bool| store.cf(if transient { CF_DELAYED_TRANSIENT } else { CF_DELAYED });
    let (stream_entries, stream_meta) = (store.cf(CF_STREAMS), store.cf(CF_STREAM_META));
    let mut batch = WriteBatch::default();
    let mut sync = false;
    let mut appender = store.segments.appender();
    let mut book = store.segments.book();
    // Segments that may now hold no live body. An appended body counts as live at once (a
    // `DeleteQueue` later in the batch finds it), whatever becomes of the batch: the queue
    // keeps a message whose write failed, and its delete will come, once, as for any other.
    let mut unused = Vec::new();
    let settled = settled_in_batch(ops);
    let elided = |queue: &u64, seq: &u64| !settled.is_empty() && settled.contains(&(*queue, *seq));
    let mut marks = DeliveredMarks::default();
    for op in ops.iter() {
        match op {
            Op::Put { queue, seq, .. } | Op::Delete { queue, seq, .. } | Op::Delivered { queue, seq }
                if elided(queue, seq) => {}
            Op::Put { queue, seq, record, body: Some(body), .. } => {
                let at = appender.add(*queue, *seq, record, body);
                batch.put_cf(messages, message_key(*queue, *seq), segments::tagged(at, record));
                book.add(*queue, *seq, at.segment);
            }
            Op::Put { queue, seq, record, body: None, .. } => {
                batch.put_cf(messages, message_key(*queue, *seq), record);
                sync = true;
            }
            Op::Delete { queue, seq, split } => {
                let key = message_key(*queue, *seq);
                batch.delete_cf(messages, key);
                if *split {
                    match book.remove(*queue, *seq) {
                        Some((segment, true)) => unused.push(segment),
                        Some(_) => {}
                        None if store.legacy_bodies => batch.delete_cf(bodies, key),
                        None => {}
                    }
                }
            }
            Op::Delivered { queue, seq } => marks.raise(*queue, *seq),
            Op::DeleteQueue { queue } => {
                // Marks go in after the ops: one from before the delete must not outlive it.
                marks.0.retain(|(q, _)| q != queue);
                marks_written.remove(queue);
                unused.extend(book.remove_queue(*queue));
                let (from, to) = queue_range(*queue);
                batch.delete_range_cf(messages, from, to);
                batch.delete_range_cf(bodies, from, to);
                batch.delete_range_cf(delivered, from, to);
                batch.delete_range_cf(transient, from, to);
                batch.delete_range_cf(stream_entries, from, to);
                batch.delete_range_cf(stream_meta, from, to);
            }
            Op::PutTransient { queue, seq, record } => batch.put_cf(transient, message_key(*queue, *seq), record),
            Op::DeleteTransient { queue, seq } => batch.delete_cf(transient, message_key(*queue, *seq)),
            Op::PutDelayed { key, value, transient, .. } => {
                batch.put_cf(delayed(*transient), key, value);
                sync |= !*transient;
            }
            Op::DeleteDelayed { key, transient } => batch.delete_cf(delayed(*transient), key),
            Op::StreamAppend { stream, offset, value, .. } => {
                batch.put_cf(stream_entries, streams::entry_key(*stream, *offset), value);
                sync = true;
            }
            Op::StreamSegment { stream, record } => {
                batch.put_cf(stream_meta, streams::segment_key(*stream, record.first), record.value())
            }
            Op::StreamTruncate { stream, below } => {
                batch.delete_range_cf(
                    stream_entries,
                    streams::entry_key(*stream, 0),
                    streams::entry_key(*stream, *below),
                );
                let (from, to) = (streams::segment_key(*stream, 0), streams::segment_key(*stream, *below));
                batch.delete_range_cf(stream_meta, from, to);
            }
            Op::StreamTrack { stream, name, offset } => {
                batch.put_cf(stream_meta, streams::tracking_key(*stream, name), offset.to_be_bytes())
            }
            Op::Barrier(_) => sync = true,
            // Taken apart by `run`.
            Op::Many(_) => debug_assert!(false, "Op::Many reached write_batch"),
        }
    }
    marks.write(&mut batch, delivered, marks_written);
    let started = std::time::Instant::now();
    // The bodies first: an index entry must never name a body that is not on disk.
    let result = match store.segments.write(&mut appender) {
        Ok(Some(checkpoint)) => {
            batch.put_cf(delivered, CHECKPOINT_KEY, checkpoint.encode());
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => Err(format!("writing message segments: {e}")),
    };
    unused.extend(appender.take_closed());
    drop(book);
    drop(appender);
    let result = result.and_then(|appended_any| {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        store.db.write_opt(batch, &opts).map_err(|e| e.to_string())?;
        if sync || appended_any {
            stats.sync_latency_us.observe(started.elapsed().as_micros() as u64);
        }
        Ok(())
    });
    // (After a failed write the deletes in it are not on disk: what they emptied stays.)
    if result.is_ok() {
        store.delete_unused_segments(&unused);
    }
    let changed = store.note_write(result.is_ok());
    match &result {
        // Every failed batch while failing would flood the log; the first says it all.
        Err(e) if changed => {
            tracing::error!(error = %e, ops = ops.len(), "store write failed; publishes in it are nacked")
        }
        Err(e) => tracing::debug!(error = %e, ops = ops.len(), "store write failed again"),
        Ok(()) if changed => tracing::warn!("store writes succeed again"),
        Ok(()) => {}
    }
    let scope = COMPLETION_SCOPE.get();
    if let Some((begin, _)) = scope {
        begin();
    }
    // Each stream hears once, after the confirms of its entries went out.
    let mut commits: Vec<(Arc<dyn StreamCommit>, u64)> = Vec::new();
    for op in ops.drain(..) {
        match op {
            Op::Put { done: Some(done), .. } | Op::PutDelayed { done: Some(done), .. } | Op::Barrier(done) => {
                done(result.clone())
            }
            Op::StreamAppend { offset, done, commit, .. } => {
                if let Some(done) = done {
                    done(result.clone());
                }
                if let Some(commit) = commit {
                    match commits.iter_mut().find(|(c, _)| Arc::ptr_eq(c, &commit)) {
                        Some((_, up_to)) => *up_to = (*up_to).max(offset),
                        None => commits.push((commit, offset)),
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((_, end)) = scope {
        end();
    }
    for (commit, up_to) in commits {
        commit.committed(up_to, result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Stored;

    fn put(queue: u64, seq: u64, done: Option<Completion>) -> Op {
        Op::Put { queue, seq, record: Bytes::from_static(b"body"), body: None, done }
    }

    #[test]
    fn a_message_acked_before_its_write_is_never_written_but_still_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stats = WriterStats::default();
        let (tx, rx) = mpsc::channel();
        let confirmed: Completion = Box::new(move |r| tx.send(r).unwrap());
        // Message 1 is written, delivered and acked in one batch; message 2 only written.
        let mut ops = vec![
            put(7, 1, Some(confirmed)),
            put(7, 2, None),
            Op::Delivered { queue: 7, seq: 1 },
            Op::Delete { queue: 7, seq: 1, split: false },
        ];
        assert_eq!(settled_in_batch(&ops), Settled::from_iter([(7, 1)]));
        write_batch(&store, &mut ops, &stats, &mut HashMap::new());
        assert_eq!(rx.try_recv(), Ok(Ok(())), "the publisher still gets its confirm");
        let stored = store.read_messages(7, &[1, 2], false).unwrap();
        let body = Stored { entry: Bytes::from_static(b"body"), body_at: None };
        assert_eq!(stored, vec![None, Some(body)]);
        // A delete in a later batch deletes what an earlier one wrote.
        write_batch(&store, &mut vec![Op::Delete { queue: 7, seq: 2, split: false }], &stats, &mut HashMap::new());
        assert_eq!(store.read_messages(7, &[2], false).unwrap(), vec![None]);
    }
}
