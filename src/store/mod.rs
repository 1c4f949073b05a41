//! The store: RocksDB under the data directory.
//!
//! Durable definitions (exchanges, queues, bindings between durable things; vhosts, users,
//! permissions and topic permissions) live in the `definitions` column family, written with a WAL sync so a declare-ok means the definition
//! survives a crash. Persistent messages of durable queues, the delivered marks of unacked ones,
//! paged-out transient bodies, delayed messages and streams ([`streams`]) each have a column
//! family of their own, written through the group-commit [`writer`]. Bodies of persistent
//! messages from `broker::record::SPLIT_BODY` bytes on are in Warren's own append-only
//! [`segments`] files beside RocksDB.
//!
//! The store deals in bytes and records: what a message or a definition means is the broker's
//! business (`broker::record` encodes messages); nothing here imports from `broker/`.
//!
//! RocksDB's `LOCK` file keeps a second Warren off the same directory; that is reported as
//! [`StoreError::InUse`], not as a RocksDB message.

pub mod backlog;
pub mod deferred;
pub mod definitions;
pub mod delayed;
mod messages;
pub mod metadata;
pub mod policies;
pub mod segments;
pub mod streams;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::protocol::ShortStr;
pub use definitions::{BindingDef, Definitions, ExchangeDef, MetadataStore, QueueDef};
pub use messages::Stored;
pub use metadata::{PermissionRecord, TopicPermissionRecord, UserRecord, VHostRecord};
pub use policies::PolicyDef;
pub use segments::Location;

const CF_DEFINITIONS: &str = "definitions";
/// The index of the persistent messages of durable queues, keyed `queue id ‖ seq` (big-endian):
/// one queue is one contiguous range, so purge and delete are range deletes and recovery is one
/// scan. An entry is a whole message, or its header when the body is stored apart (the broker
/// decides which; see `broker::record`): in a segment the entry names ([`segments::tagged`]),
/// or, written before segments existed, in [`CF_BODIES`].
const CF_MESSAGES: &str = "messages";
/// Bodies stored apart from their index entries, under the same keys, by versions before
/// [`segments`]: still read and deleted, no longer written.
const CF_BODIES: &str = "bodies";
/// `queue id ‖ seq` of messages delivered and not yet acked: they recover as redelivered.
const CF_DELIVERED: &str = "delivered";
/// Bodies of transient messages paged out of memory under a backlog; never synced, and
/// emptied at start-up (transient messages do not survive a restart).
const CF_TRANSIENT: &str = "transient";

/// In [`CF_DELIVERED`], where no queue's key reaches: how far the segments are indexed.
const CHECKPOINT_KEY: [u8; 16] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];

pub fn message_key(queue: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&queue.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// `[from, to)` covering every key of a queue.
pub fn queue_range(queue: u64) -> ([u8; 16], [u8; 16]) {
    (message_key(queue, 0), message_key(queue + 1, 0))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {0} is in use by another Warren (RocksDB lock held)")]
    InUse(PathBuf),
    #[error("cannot create data directory {0}: {1}")]
    CreateDir(PathBuf, std::io::Error),
    #[error("storage error: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    #[error("message segments: {0}")]
    Segments(#[from] std::io::Error),
}

pub struct Store {
    db: DB,
    path: PathBuf,
    /// The last write failed and none has succeeded since (the broker's store alarm).
    write_failing: std::sync::atomic::AtomicBool,
    segments: segments::Segments,
    /// [`CF_BODIES`] held bodies at start-up: deleting a message that has no segment deletes
    /// its body there too (otherwise each ack would write a tombstone for nothing).
    legacy_bodies: bool,
}

/// What the broker holds to persist things: the store for definitions, the group-commit
/// writer for messages, and the allocator of queue ids (message key prefixes). Dropping the
/// last handle stops the writer thread, which then closes the database.
pub struct StoreHandle {
    pub store: Arc<Store>,
    pub writer: writer::StoreWriter,
    next_queue_id: AtomicU64,
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

/// The database must be closed before the process exits: RocksDB's background threads do not
/// survive C++ static destruction. So the last handle stops the writer thread and waits for it;
/// the store (and RocksDB) then closes on this thread, deterministically.
impl Drop for StoreHandle {
    fn drop(&mut self) {
        self.writer.close();
        if let Some(thread) = self.writer_thread.take() {
            // A completion running on the writer thread may drop the last handle: never join
            // oneself (the thread ends by itself right after).
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl StoreHandle {
    pub fn open(dir: &Path) -> Result<(StoreHandle, Definitions), StoreError> {
        let store = Arc::new(Store::open(dir)?);
        let defs = store.load_definitions()?;
        let next = defs.queues.iter().map(|q| q.id + 1).max().unwrap_or(1);
        let (writer, thread) = writer::StoreWriter::start(store.clone());
        let handle = StoreHandle { store, writer, next_queue_id: AtomicU64::new(next), writer_thread: Some(thread) };
        Ok((handle, defs))
    }

    pub fn new_queue_id(&self) -> u64 {
        self.next_queue_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The same store seen through the narrow interface the definitions funnel writes to.
    pub fn metadata(&self) -> Arc<dyn MetadataStore> {
        self.store.clone()
    }
}

/// Bytes of memtables across all column families before the largest is flushed.
const MEMTABLE_BUDGET: usize = 32 * 1024 * 1024;

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::CreateDir(dir.to_path_buf(), e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // One memtable budget for all column families (each would otherwise fill 64 MiB, twice
        // while flushing): draining a 1 M backlog writes a tombstone per ack, and those alone
        // took the broker from 90 to 194 MiB.
        opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        // An index entry of 1 KiB or more (a small body with large headers, or a whole message
        // an earlier version stored) goes to a blob file, so compaction does not rewrite it;
        // so does what remains of the bodies earlier versions stored in their own family.
        let mut messages = Options::default();
        messages.set_enable_blob_files(true);
        messages.set_min_blob_size(1024);
        let mut bodies = Options::default();
        bodies.set_enable_blob_files(true);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_DEFINITIONS, Options::default()),
            ColumnFamilyDescriptor::new(CF_MESSAGES, messages),
            ColumnFamilyDescriptor::new(CF_BODIES, bodies),
            ColumnFamilyDescriptor::new(CF_DELIVERED, Options::default()),
            ColumnFamilyDescriptor::new(CF_TRANSIENT, Options::default()),
            ColumnFamilyDescriptor::new(delayed::CF_DELAYED, delayed_options()),
            ColumnFamilyDescriptor::new(delayed::CF_DELAYED_TRANSIENT, delayed_options()),
            ColumnFamilyDescriptor::new(streams::CF_STREAMS, streams::stream_options()),
            ColumnFamilyDescriptor::new(streams::CF_STREAM_META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| {
            // RocksDB reports the held lock as an IO error naming the LOCK file.
            if e.as_ref().contains("LOCK") {
                StoreError::InUse(dir.to_path_buf())
            } else {
                StoreError::Db(e)
            }
        })?;
        let checkpoint = (db.get_cf(cf_of(&db, CF_DELIVERED), CHECKPOINT_KEY)?)
            .map(|v| segments::Checkpoint::decode(&v).ok_or_else(|| StoreError::Corrupt("segment checkpoint".into())))
            .transpose()?;
        let (segments, replayed) = segments::Segments::open(dir, checkpoint)?;
        let legacy_bodies = db.iterator_cf(cf_of(&db, CF_BODIES), IteratorMode::Start).next().is_some();
        let store = Store { db, path: dir.to_path_buf(), write_failing: Default::default(), segments, legacy_bodies };
        store.index_replayed(replayed)?;
        // What a previous run paged out of transient messages is gone with that run.
        let mut wipe = WriteBatch::default();
        wipe.delete_range_cf(store.cf(CF_TRANSIENT), vec![0u8; 16], vec![0xffu8; 17]);
        // So are the messages held by its transient delayed exchanges.
        wipe.delete_range_cf(store.cf(delayed::CF_DELAYED_TRANSIENT), vec![0u8; 16], vec![0xffu8; 17]);
        store.db.write(wipe)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Space available to us on the data directory's file system, in bytes.
    pub fn free_space(&self) -> std::io::Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer for statvfs.
        if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        // Both are 64-bit on every Linux target Warren builds for.
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Records the outcome of a write; true when that changed whether writes are failing.
    fn note_write(&self, ok: bool) -> bool {
        self.write_failing.swap(!ok, Ordering::AcqRel) == ok
    }

    pub fn is_write_failing(&self) -> bool {
        self.write_failing.load(Ordering::Acquire)
    }

    /// Tries a small synced write (into the transient family, which holds no real key at
    /// `u64::MAX`), and room for the segment write that failed, to learn whether the store
    /// takes writes again.
    pub fn probe_write(&self) -> bool {
        if !self.segments.probe() {
            return false;
        }
        let key = message_key(u64::MAX, u64::MAX);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_TRANSIENT), key, b"probe");
        batch.delete_cf(self.cf(CF_TRANSIENT), key);
        let ok = self.db.write_opt(batch, &opts).is_ok();
        self.note_write(ok);
        ok
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        cf_of(&self.db, name)
    }

    /// Indexes again the segment records whose index entries a crash lost (see [`segments`]),
    /// and puts the checkpoint where appends start, synced: segment ids are never reused.
    fn index_replayed(&self, replayed: Vec<segments::Replayed>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        if !replayed.is_empty() {
            tracing::info!(messages = replayed.len(), "indexing again messages the last run stored and did not index");
        }
        for r in replayed {
            batch.put_cf(self.cf(CF_MESSAGES), message_key(r.queue, r.seq), segments::tagged(r.at, &r.entry));
        }
        batch.put_cf(self.cf(CF_DELIVERED), CHECKPOINT_KEY, self.segments.start().encode());
        self.write(batch)
    }

    /// Every queue has counted its stored bodies: segments no message needs may go, and
    /// those that hold none now go (once the WAL holds what start-up deleted for good:
    /// expired messages, orphaned queues).
    pub fn recovered(&self) {
        if self.segments.recovered() {
            self.delete_unused_segments(&self.segments.ids());
        }
    }

    /// Deletes the segments of `candidates` no live message needs, once a synced WAL holds the
    /// checkpoint past them and the deletes that emptied them (a crash must not bring back an
    /// index entry naming a deleted segment, nor a replay start before one).
    fn delete_unused_segments(&self, candidates: &[u32]) {
        if candidates.is_empty() || !self.segments.may_delete() {
            return;
        }
        if let Err(e) = self.db.flush_wal(true) {
            tracing::warn!(error = %e, "cannot sync the WAL; unused message segments kept for now");
            return;
        }
        self.segments.delete_unused(candidates);
    }

    fn definitions(&self) -> &ColumnFamily {
        self.cf(CF_DEFINITIONS)
    }

    fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        Ok(self.db.write_opt(batch, &Self::synced())?)
    }
}

/// Definitions kept in the `definitions` column family, each change synced before it returns.
impl MetadataStore for Store {
    fn save_exchange(&self, x: &ExchangeDef) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), x.key(), x.value());
        self.write(b)
    }

    fn save_queue(&self, q: &QueueDef) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), q.key(), q.value());
        self.write(b)
    }

    fn save_binding(&self, binding: &BindingDef) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), binding.key(), []);
        self.write(b)
    }

    fn delete_binding(&self, binding: &BindingDef) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.delete_cf(self.definitions(), binding.key());
        self.write(b)
    }

    /// Deletes an exchange (`to_queue = false`) or queue and every stored binding from or to it.
    fn delete_entity(&self, vhost: &ShortStr, name: &ShortStr, is_queue: bool) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        let key = definitions::entity_key(vhost, name, is_queue);
        b.delete_cf(self.definitions(), key);
        for binding in self.bindings_of(vhost)? {
            let from = !is_queue && binding.source == *name;
            let to = binding.to_queue == is_queue && binding.destination == *name;
            if from || to {
                b.delete_cf(self.definitions(), binding.key());
            }
        }
        self.write(b)
    }

    fn load_definitions(&self) -> Result<Definitions, StoreError> {
        let mut defs = Definitions::default();
        for item in self.db.iterator_cf(self.definitions(), IteratorMode::Start) {
            let (k, v) = item?;
            definitions::decode_into(&mut defs, &k, &v).map_err(|e| StoreError::Corrupt(e.message.into_owned()))?;
        }
        Ok(defs)
    }

    fn save_vhost(&self, v: &VHostRecord) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), v.key(), v.value());
        self.write(b)
    }

    fn delete_vhost(&self, name: &ShortStr) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.delete_cf(self.definitions(), metadata::vhost_prefix(metadata::VHOST, name));
        for prefix in definitions::vhost_contents_prefixes(name) {
            for key in self.definition_keys(&prefix)? {
                b.delete_cf(self.definitions(), key);
            }
        }
        self.write(b)
    }

    fn save_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), u.key(), u.value());
        self.write(b)
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.delete_cf(self.definitions(), metadata::user_key(name));
        for key in self.definition_keys(&[metadata::PERMISSION])? {
            if metadata::split_permission_key(&key[1..]).is_some_and(|(_, user)| user == name) {
                b.delete_cf(self.definitions(), key);
            }
        }
        for key in self.definition_keys(&[metadata::TOPIC_PERMISSION])? {
            if metadata::split_topic_permission_key(&key[1..]).is_some_and(|(_, user, _)| user == name) {
                b.delete_cf(self.definitions(), key);
            }
        }
        self.write(b)
    }

    fn save_permission(&self, p: &PermissionRecord) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), p.key(), p.value());
        self.write(b)
    }

    fn delete_permission(&self, vhost: &ShortStr, user: &str) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.delete_cf(self.definitions(), metadata::permission_key(vhost, user));
        self.write(b)
    }

    fn save_topic_permission(&self, p: &TopicPermissionRecord) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), p.key(), p.value());
        self.write(b)
    }

    fn delete_topic_permissions(&self, vhost: &ShortStr, user: &str, exchange: Option<&str>) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        match exchange {
            Some(x) => b.delete_cf(self.definitions(), metadata::topic_permission_key(vhost, user, x)),
            None => {
                for key in self.definition_keys(&metadata::topic_permissions_prefix(vhost, user))? {
                    b.delete_cf(self.definitions(), key);
                }
            }
        }
        self.write(b)
    }

    fn initialise(
        &self,
        vhosts: &[VHostRecord],
        users: &[UserRecord],
        permissions: &[PermissionRecord],
    ) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        let cf = self.definitions();
        vhosts.iter().for_each(|v| b.put_cf(cf, v.key(), v.value()));
        users.iter().for_each(|u| b.put_cf(cf, u.key(), u.value()));
        permissions.iter().for_each(|p| b.put_cf(cf, p.key(), p.value()));
        b.put_cf(cf, metadata::initialised_key(), []);
        self.write(b)
    }

    fn save_policy(&self, p: &PolicyDef) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), p.key(), p.value());
        self.write(b)
    }

    fn delete_policy(&self, operator: bool, vhost: &ShortStr, name: &str) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.delete_cf(self.definitions(), policies::policy_key(operator, vhost, name));
        self.write(b)
    }
}

impl Store {
    /// Keys of the definitions column family that start with `prefix`.
    fn definition_keys(&self, prefix: &[u8]) -> Result<Vec<Box<[u8]>>, StoreError> {
        let mut keys = Vec::new();
        for item in self.db.iterator_cf(self.definitions(), IteratorMode::From(prefix, rocksdb::Direction::Forward)) {
            let (k, _) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            keys.push(k);
        }
        Ok(keys)
    }

    fn bindings_of(&self, vhost: &ShortStr) -> Result<Vec<BindingDef>, StoreError> {
        let prefix = definitions::binding_prefix(vhost);
        let mut defs = Definitions::default();
        for item in self.db.iterator_cf(self.definitions(), IteratorMode::From(&prefix, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            definitions::decode_into(&mut defs, &k, &v).map_err(|e| StoreError::Corrupt(e.message.into_owned()))?;
        }
        Ok(defs.bindings)
    }
}

/// The delayed-message families are queues in time: written at the back, read and deleted at
/// the front. Bodies go to blob files as in `messages`; files dense with deletes are compacted
/// early so the front stays cheap to seek to.
fn delayed_options() -> Options {
    let mut o = Options::default();
    o.set_enable_blob_files(true);
    o.set_min_blob_size(1024);
    o.add_compact_on_deletion_collector_factory(4096, 2048, 0.5);
    o
}

fn cf_of<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    // Every column family is created by `open` (create_missing_column_families).
    db.cf_handle(name).expect("column family created at open")
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    key.get(8..16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("message key is not queue id + seq".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::InUse(_)), "{err}");
        drop(first);
        Store::open(dir.path()).expect("free again once the first is closed");
    }

    #[test]
    fn deleting_a_queue_deletes_its_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let v = ShortStr::from_static("/");
        let q = QueueDef {
            vhost: v.clone(),
            name: ShortStr::from_static("q"),
            id: 7,
            auto_delete: false,
            arguments: Default::default(),
        };
        let b = BindingDef {
            vhost: v.clone(),
            source: ShortStr::from_static("x"),
            to_queue: true,
            destination: q.name.clone(),
            routing_key: ShortStr::from_static("k"),
            arguments: Default::default(),
        };
        s.save_queue(&q).unwrap();
        s.save_binding(&b).unwrap();
        assert_eq!(s.load_definitions().unwrap().bindings.len(), 1);
        s.delete_entity(&v, &q.name, true).unwrap();
        let d = s.load_definitions().unwrap();
        assert!(d.queues.is_empty() && d.bindings.is_empty());
    }
}
