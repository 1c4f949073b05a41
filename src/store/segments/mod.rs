//! Message bodies in Warren's own append-only segment files, `segments/NNNNNNNNNN.seg` under the
//! data directory. RocksDB keeps the queue index; an index entry names its body's segment,
//! offset and length.
//!
//! Why not RocksDB's blob files, as before: a body went to RocksDB's WAL, then once more to a
//! blob file when the memtable was flushed, and draining read it back with a `pread` each. Here
//! a body is written once, a group commit's bodies with one write (`direct.rs`: a direct,
//! synchronous write into a segment prepared with zeros; or a `pwrite` and an `fdatasync`), and a
//! consumer reaching a backlog reads a run of bodies with one `pread`. A segment file is deleted
//! once no live message has its body there ([`book`]).
//!
//! One sync per group commit: when a batch's only durable content is bodies, the segment is
//! synced and the RocksDB write is not. Each segment record carries its index entry, queue and
//! sequence number, under a CRC; each RocksDB batch that follows an append records how far the
//! segments go (the checkpoint, in the same write). RocksDB recovers a prefix of its writes, so
//! after a crash the records past the recovered checkpoint are those whose index entries were
//! lost: [`Segments::open`] reads them back (up to the first torn record) for the store to index
//! again. (So are the records of a batch whose RocksDB write failed, if no later checkpoint
//! reached the disk: publishes that were nacked may come back, which "at least once" allows.)
//! A segment is deleted only after a synced WAL put the checkpoint past it.

pub mod book;
mod direct;
mod read;
mod replay;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::{BufMut, Bytes};

use book::Book;

/// A segment is closed once it reaches this size (the record that crosses it stays whole).
pub const SEGMENT_SIZE: u64 = 32 << 20;

/// A segment written through the page cache (the first of a run: no segment was prepared yet)
/// is closed from this size on as soon as the next one is prepared for direct appends, which
/// cost less per batch than a `pwrite` and an `fdatasync` of a growing file.
const BUFFERED_MIN: u64 = 1 << 20;

/// A segment record: CRC-32C of the rest, entry length, body length, queue, sequence number;
/// then the index entry and the body.
const RECORD_HEADER: usize = 4 + 4 + 4 + 8 + 8;

/// An index value that names its body's place: this byte, the place, then the entry. The
/// broker's own formats start with small numbers (`broker::record`).
const TAG: u8 = 0x80;
const TAG_LEN: usize = 1 + 4 + 4 + 4;

/// Where a body is: segment, offset of its first byte, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: u32,
    pub offset: u32,
    pub len: u32,
}

/// The index value for an entry whose body is at `at`.
pub fn tagged(at: Location, entry: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(TAG_LEN + entry.len());
    v.put_u8(TAG);
    v.put_u32(at.segment);
    v.put_u32(at.offset);
    v.put_u32(at.len);
    v.put_slice(entry);
    v
}

/// An index value split into the broker's entry and, when it names one, its body's place.
pub fn untag(value: Bytes) -> (Bytes, Option<Location>) {
    if value.first() != Some(&TAG) || value.len() < TAG_LEN {
        return (value, None);
    }
    let word = |i: usize| u32::from_be_bytes(value[i..i + 4].try_into().expect("4 bytes"));
    let at = Location { segment: word(1), offset: word(5), len: word(9) };
    (value.slice(TAG_LEN..), Some(at))
}

/// How far the segments go: every record before it is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub segment: u32,
    pub end: u64,
}

impl Checkpoint {
    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.segment.to_be_bytes());
        b[4..].copy_from_slice(&self.end.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Checkpoint> {
        let segment = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
        let end = u64::from_be_bytes(b.get(4..12)?.try_into().ok()?);
        Some(Checkpoint { segment, end })
    }
}

/// A record past the checkpoint, read back at start-up for its index entry to be written again.
#[derive(Debug, PartialEq, Eq)]
pub struct Replayed {
    pub queue: u64,
    pub seq: u64,
    pub at: Location,
    pub entry: Vec<u8>,
}

pub struct Segments {
    dir: PathBuf,
    /// Every segment on disk, for reading (appends go through [`Appender`]).
    files: RwLock<HashMap<u32, Arc<File>>>,
    book: Mutex<Book>,
    appender: Mutex<Appender>,
    /// Every queue has counted its bodies ([`Segments::recovered`]): until then a segment
    /// without a counted body may still hold live ones.
    recovered: AtomicBool,
    /// Bytes of the last batch that could not be written (0 once one is): what
    /// [`Segments::probe`] needs room for.
    failed: AtomicU64,
    /// A queue's recovery could not count all its bodies: nothing is deleted in this run.
    uncounted: AtomicBool,
}

fn file_name(id: u32) -> String {
    format!("{id:010}.seg")
}

/// Whether a segment file has no first record: empty, or zeros where it would start.
fn holds_nothing(file: &File) -> io::Result<bool> {
    let mut header = [0u8; RECORD_HEADER];
    let mut got = 0;
    while got < RECORD_HEADER {
        match file.read_at(&mut header[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(header[..got].iter().all(|&b| b == 0))
}

impl Segments {
    /// Opens the segments under `data_dir`, and reads back the records past `checkpoint` (all
    /// of them with none). Appends go to a new segment after the last.
    pub fn open(data_dir: &Path, checkpoint: Option<Checkpoint>) -> io::Result<(Segments, Vec<Replayed>)> {
        let dir = data_dir.join("segments");
        std::fs::create_dir_all(&dir)?;
        let mut files = HashMap::new();
        for item in std::fs::read_dir(&dir)? {
            let name = item?.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let file = File::open(dir.join(&name))?;
            // Past the checkpoint and without a first record: prepared and never used, or
            // created by a run that stopped before its first write reached the disk. No index
            // entry can name it. (One the checkpoint has passed is kept, whatever it holds.)
            let unindexed = checkpoint.is_none_or(|c| id > c.segment || (id == c.segment && c.end == 0));
            if unindexed && holds_nothing(&file)? {
                if let Err(e) = std::fs::remove_file(dir.join(&name)) {
                    tracing::warn!(segment = id, error = %e, "cannot remove an unused message segment");
                }
                continue;
            }
            files.insert(id, Arc::new(file));
        }
        let mut ids: Vec<u32> = files.keys().copied().collect();
        ids.sort_unstable();
        let from = checkpoint.unwrap_or_default();
        let mut replayed = Vec::new();
        for &id in ids.iter().filter(|&&id| id >= from.segment) {
            let start = if id == from.segment { from.end } else { 0 };
            replay::replay(&files[&id], id, start, &mut replayed)?;
        }
        // Never an id the checkpoint could name with records already indexed: a segment
        // deleted since would otherwise come back under it, its start skipped by a replay.
        let after_checkpoint = checkpoint.map_or(1, |c| if c.end > 0 { c.segment + 1 } else { c.segment.max(1) });
        let next_id = ids.last().map_or(1, |last| last + 1).max(after_checkpoint);
        let segments = Segments {
            dir,
            files: RwLock::new(files),
            book: Mutex::default(),
            appender: Mutex::new(Appender {
                next_id,
                current: None,
                pending: Vec::new(),
                closed: Vec::new(),
                spare: None,
                direct_works: true,
                size: SEGMENT_SIZE,
            }),
            recovered: AtomicBool::new(false),
            failed: AtomicU64::new(0),
            uncounted: AtomicBool::new(false),
        };
        Ok((segments, replayed))
    }

    /// Where appends start: everything before it is on disk (the checkpoint after a replay).
    pub fn start(&self) -> Checkpoint {
        Checkpoint { segment: self.appender().next_id, end: 0 }
    }

    /// The appender, for the writer's batch.
    pub fn appender(&self) -> MutexGuard<'_, Appender> {
        self.appender.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A queue's recovery stopped before it had counted all its bodies.
    pub fn counting_failed(&self) {
        self.uncounted.store(true, Ordering::Release);
    }

    /// Every queue has counted the bodies its index names: from now on a segment that holds
    /// no live body can go, unless a queue could not count them all. Returns whether they may.
    pub fn recovered(&self) -> bool {
        if self.uncounted.load(Ordering::Acquire) {
            tracing::warn!(
                "message segments are kept until the next start: a queue's stored messages could not all be read"
            );
            return false;
        }
        self.recovered.store(true, Ordering::Release);
        true
    }

    /// Deletes the segments of `ids` that hold no live body, are not being appended to, and
    /// are not needed until every queue has been recovered. The caller has made sure the
    /// checkpoint past them is on disk.
    pub fn delete_unused(&self, ids: &[u32]) {
        if !self.recovered.load(Ordering::Acquire) || ids.is_empty() {
            return;
        }
        let current = self.appender().current.as_ref().map(|c| c.id);
        let book = self.book();
        let unused: Vec<u32> = ids.iter().copied().filter(|&id| Some(id) != current && book.live(id) == 0).collect();
        drop(book);
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        for id in unused {
            if files.remove(&id).is_none() {
                continue;
            }
            if let Err(e) = std::fs::remove_file(self.dir.join(file_name(id))) {
                tracing::warn!(segment = id, error = %e, "cannot delete a message segment no message needs");
            }
        }
    }

    /// Whether deleting `ids` may happen now (see [`Segments::delete_unused`]), so the caller
    /// syncs the WAL only when it will.
    pub fn may_delete(&self) -> bool {
        self.recovered.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub fn set_segment_size(&self, size: u64) {
        self.appender().size = size;
    }

    /// The ids of the segment files on disk.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.files.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn file(&self, id: u32) -> Option<Arc<File>> {
        self.files.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    /// Writes what the batch appended, durably: per segment it touched, one direct synchronous
    /// write (a prepared segment), or a `pwrite` and an `fdatasync` (a new segment's directory
    /// entry is synced too). Returns how far the segments now go; `None` if nothing was
    /// appended. The segments closed on the way are left in [`Appender::take_closed`].
    pub fn write(&self, app: &mut Appender) -> io::Result<Option<Checkpoint>> {
        if app.pending.is_empty() {
            return Ok(None);
        }
        let bytes = app.pending.iter().map(|p| p.buf.len() as u64).sum();
        let result = self.write_pending(app);
        self.failed.store(if result.is_err() { bytes } else { 0 }, Ordering::Relaxed);
        if result.is_err() {
            // What reached the file is unknown: later appends start a new segment, so a torn
            // record can only ever be a segment's last.
            if let Some(failed) = app.current.take() {
                app.closed.push(failed.id);
            }
            app.pending.clear();
        }
        result.map(Some)
    }

    /// Whether the file system has room for the batch that failed last (a full disk), by
    /// reserving that much in a scratch file. A write much smaller would succeed on a disk
    /// still too full for the bodies, and the store alarm would clear only to be raised again.
    pub fn probe(&self) -> bool {
        let need = self.failed.load(Ordering::Relaxed);
        if need == 0 {
            return true;
        }
        let path = self.dir.join("probe");
        let reserved = std::fs::File::create(&path).and_then(|f| {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; fallocate reads no memory of ours.
            match unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, need as libc::off_t) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        });
        let _ = std::fs::remove_file(&path);
        if reserved.is_ok() {
            self.failed.store(0, Ordering::Relaxed);
        }
        reserved.is_ok()
    }

    fn write_pending(&self, app: &mut Appender) -> io::Result<Checkpoint> {
        for p in std::mem::take(&mut app.pending) {
            if app.current.as_ref().is_none_or(|c| c.id != p.id) {
                let open = self.create(app, p.id)?;
                if let Some(old) = app.current.replace(open) {
                    app.closed.push(old.id);
                }
            }
            let current = app.current.as_mut().expect("opened above");
            match &mut current.direct {
                Some(direct) => direct.append(p.base, &p.buf)?,
                None => {
                    current.file.write_all_at(&p.buf, p.base)?;
                    current.file.sync_data()?;
                }
            }
            current.len = p.base + p.buf.len() as u64;
        }
        self.prepare_next(app);
        let current = app.current.as_ref().expect("written above");
        Ok(Checkpoint { segment: current.id, end: current.len })
    }

    /// Opens segment `id` to append to: the one prepared in the background if it is that one
    /// (direct appends), else a new empty file (buffered appends).
    fn create(&self, app: &mut Appender, id: u32) -> io::Result<Open> {
        let path = self.dir.join(file_name(id));
        let prepared = match app.spare.take() {
            // Prepared for a later segment (this batch rolls over more than one): kept.
            Some(spare) if spare.id > id => {
                app.spare = Some(spare);
                None
            }
            Some(Spare { id: spare, preparing, .. }) => {
                let prepared = preparing.join().unwrap_or_else(|_| Err(io::Error::other("panicked")));
                match prepared {
                    Ok(direct) if spare == id => Some(direct),
                    Ok(_) => {
                        let _ = std::fs::remove_file(self.dir.join(file_name(spare)));
                        None
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        tracing::info!(error = %e, "message segments are written through the page cache (no direct I/O on this file system)");
                        app.direct_works = false;
                        None
                    }
                    Err(e) => {
                        tracing::warn!(segment = spare, error = %e, "could not prepare a message segment; this one is written through the page cache");
                        None
                    }
                }
            }
            None => None,
        };
        // A failed preparation may have left a file: it is started afresh.
        let file = match prepared {
            Some(_) => std::fs::OpenOptions::new().read(true).write(true).open(&path)?,
            None => std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?,
        };
        File::open(&self.dir)?.sync_all()?;
        let file = Arc::new(file);
        self.files.write().unwrap_or_else(|e| e.into_inner()).insert(id, file.clone());
        Ok(Open { id, file, len: 0, direct: prepared })
    }

    /// Has the segment after the last one prepared in the background, where direct I/O works
    /// and none is being prepared.
    fn prepare_next(&self, app: &mut Appender) {
        if !app.direct_works || app.spare.is_some() {
            return;
        }
        let (next, size) = (app.next_id, app.size);
        let path = self.dir.join(file_name(next));
        let ready = Arc::new(AtomicBool::new(false));
        let done = ready.clone();
        let spawned = std::thread::Builder::new().name("warren-segment-prep".into()).spawn(move || {
            std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
            let prepared = direct::DirectFile::prepare(&path, size)?;
            done.store(true, Ordering::Release);
            Ok(prepared)
        });
        match spawned {
            Ok(preparing) => app.spare = Some(Spare { id: next, preparing, ready }),
            Err(e) => tracing::warn!(error = %e, "cannot start preparing the next message segment"),
        }
    }
}

/// The segment being appended to.
struct Open {
    id: u32,
    /// For reads, and for buffered appends.
    file: Arc<File>,
    len: u64,
    /// Direct appends, when the segment was prepared for them.
    direct: Option<direct::DirectFile>,
}

/// Records appended in this batch to segment `id` from `base`, not yet written.
struct Pending {
    id: u32,
    base: u64,
    buf: Vec<u8>,
}

/// A segment being filled with zeros in the background for direct appends.
struct Spare {
    id: u32,
    preparing: std::thread::JoinHandle<io::Result<direct::DirectFile>>,
    /// Set by the preparing thread once the segment is ready (never if it failed).
    ready: Arc<AtomicBool>,
}

/// Appends bodies: [`Appender::add`] places a record, [`Segments::write`] writes the batch's.
pub struct Appender {
    next_id: u32,
    current: Option<Open>,
    pending: Vec<Pending>,
    /// Segments no longer appended to since the last [`Appender::take_closed`].
    closed: Vec<u32>,
    /// The next segment (its id: `next_id` when it started), being filled with zeros in the
    /// background for direct appends.
    spare: Option<Spare>,
    /// No preparation has failed yet (the file system takes direct I/O, and has room).
    direct_works: bool,
    /// [`SEGMENT_SIZE`], smaller in tests.
    size: u64,
}

impl Drop for Appender {
    /// Waits for a segment being prepared: its thread writes in the data directory.
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            let _ = spare.preparing.join();
        }
    }
}

impl Appender {
    /// Whether appends at `end` of segment `id` should rather start the next segment: `id`
    /// is written through the page cache, holds [`BUFFERED_MIN`] already, and the segment
    /// prepared for direct appends is ready (not merely finished: a preparation that failed,
    /// on a full disk say, would have it close a segment every MiB).
    fn spare_beats(&self, id: u32, end: u64) -> bool {
        end >= BUFFERED_MIN
            && self.current.as_ref().is_some_and(|c| c.id == id && c.direct.is_none())
            && self.spare.as_ref().is_some_and(|s| s.id == self.next_id && s.ready.load(Ordering::Acquire))
    }

    /// The segments closed since the last call: candidates for deletion.
    pub fn take_closed(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.closed)
    }

    /// Places a record for the body of `queue`'s message `seq` (with its index `entry`) and
    /// returns where the body will be once the batch is written.
    pub fn add(&mut self, queue: u64, seq: u64, entry: &[u8], body: &[u8]) -> Location {
        let size = (RECORD_HEADER + entry.len() + body.len()) as u64;
        let at = match (self.pending.last(), &self.current) {
            (Some(p), _) => Some((p.id, p.base + p.buf.len() as u64)),
            (None, Some(c)) => Some((c.id, c.len)),
            (None, None) => None,
        };
        match at {
            Some((id, end)) if end == 0 || (end + size <= self.size && !self.spare_beats(id, end)) => {
                if self.pending.last().is_none_or(|p| p.id != id) {
                    self.pending.push(Pending { id, base: end, buf: Vec::new() });
                }
            }
            _ => {
                let id = self.next_id;
                self.next_id += 1;
                self.pending.push(Pending { id, base: 0, buf: Vec::new() });
            }
        }
        let p = self.pending.last_mut().expect("pushed above");
        let start = p.buf.len();
        p.buf.reserve(size as usize);
        p.buf.put_u32(0);
        p.buf.put_u32(entry.len() as u32);
        p.buf.put_u32(body.len() as u32);
        p.buf.put_u64(queue);
        p.buf.put_u64(seq);
        p.buf.put_slice(entry);
        p.buf.put_slice(body);
        let crc = crc32c::crc32c(&p.buf[start + 4..]);
        p.buf[start..start + 4].copy_from_slice(&crc.to_be_bytes());
        let body_at = p.base + (start + RECORD_HEADER + entry.len()) as u64;
        // Segments stay far below 4 GiB: a record starts below SEGMENT_SIZE, and a body is
        // bounded by the frame-max-limited message size.
        Location { segment: p.id, offset: body_at as u32, len: body.len() as u32 }
    }
}
