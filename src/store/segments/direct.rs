//! Appending to a segment with `O_DIRECT | O_DSYNC` writes into a file whose blocks were written
//! (with zeros) before: each write is durable when it returns, and it neither copies into the
//! page cache nor makes the file system write the inode's size or extents, since the file does
//! not grow and no extent changes (on ext4 and XFS; a copy-on-write file system still syncs
//! what it must, `O_DSYNC` sees to it). A `pwrite` and an `fdatasync` into a growing file cost three device
//! requests per group commit (the data, the inode, a cache flush), and the kernel's writeback
//! of the dirty pages ran in the syncing thread: S6's publish spent 15 % more CPU that way.
//!
//! Direct I/O writes whole blocks from aligned memory: the last, partly filled block is kept
//! and written again, with the same bytes in front, by the next append (a torn rewrite leaves
//! each sector old or new, and both hold the records before). File systems that refuse
//! `O_DIRECT` keep the buffered path (`Segments::write_pending`).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The block size direct writes are aligned to (that of every common file system and disk).
const BLOCK: usize = 4096;
/// Zeros written at a time when a segment is prepared.
const FILL_CHUNK: usize = 1 << 20;

/// A prepared segment's file opened for direct, synchronous appends.
pub struct DirectFile {
    file: File,
    /// The bytes of the last, partly filled block (written, and written again next time).
    tail: Vec<u8>,
    buf: AlignedBuf,
}

impl DirectFile {
    /// Fills the new file at `path` with `size` bytes of zeros, synced, and opens it for
    /// direct appends. `Err` where the file system refuses direct I/O, or space runs out.
    pub fn prepare(path: &Path, size: u64) -> io::Result<DirectFile> {
        let fill = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path)?;
        let zeros = AlignedBuf::zeroed(FILL_CHUNK);
        let mut at = 0;
        while at < size {
            fill.write_all_at(zeros.bytes(FILL_CHUNK), at)?;
            at += FILL_CHUNK as u64;
        }
        fill.sync_all()?;
        let file = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT | libc::O_DSYNC).open(path)?;
        Ok(DirectFile { file, tail: Vec::new(), buf: AlignedBuf::zeroed(0) })
    }

    /// Writes `data` at `at`, the end of what was appended so far, durably.
    pub fn append(&mut self, at: u64, data: &[u8]) -> io::Result<()> {
        let start = at - self.tail.len() as u64;
        debug_assert_eq!(start % BLOCK as u64, 0, "the tail starts a block");
        let len = self.tail.len() + data.len();
        let padded = len.div_ceil(BLOCK) * BLOCK;
        self.buf.reserve(padded);
        let out = self.buf.bytes_mut(padded);
        out[..self.tail.len()].copy_from_slice(&self.tail);
        out[self.tail.len()..len].copy_from_slice(data);
        out[len..].fill(0);
        self.file.write_all_at(self.buf.bytes(padded), start)?;
        let whole = len - len % BLOCK;
        let out = self.buf.bytes(len);
        self.tail.clear();
        self.tail.extend_from_slice(&out[whole..]);
        Ok(())
    }
}

/// Zeroed memory aligned to [`BLOCK`], as direct I/O needs.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
}

// SAFETY: the buffer is plain memory owned by this value.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn layout(cap: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(cap.max(BLOCK), BLOCK).expect("a valid layout")
    }

    fn zeroed(cap: usize) -> AlignedBuf {
        let layout = Self::layout(cap);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap: layout.size() }
    }

    /// Room for at least `len` bytes (the contents are not kept).
    fn reserve(&mut self, len: usize) {
        if len > self.cap {
            *self = AlignedBuf::zeroed(len.next_power_of_two());
        }
    }

    fn bytes(&self, len: usize) -> &[u8] {
        assert!(len <= self.cap);
        // SAFETY: `cap` initialised (zeroed) bytes from `ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), len) }
    }

    fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.cap);
        // SAFETY: as in `bytes`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_of_any_length_land_where_a_buffered_reader_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        File::create(&path).unwrap();
        let Ok(mut direct) = DirectFile::prepare(&path, 2 * FILL_CHUNK as u64) else {
            eprintln!("SKIPPED: no O_DIRECT on this file system");
            return;
        };
        let mut written = Vec::new();
        for (i, n) in [10usize, 4086, 1, 5000, 4096, 3].into_iter().enumerate() {
            let data: Vec<u8> = (0..n).map(|b| (b + i) as u8).collect();
            direct.append(written.len() as u64, &data).unwrap();
            written.extend_from_slice(&data);
        }
        let reader = File::open(&path).unwrap();
        let mut back = vec![0u8; written.len() + 100];
        reader.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back[..written.len()], &written[..]);
        assert!(back[written.len()..].iter().all(|&b| b == 0), "zeros after the end");
        assert_eq!(reader.metadata().unwrap().len(), 2 * FILL_CHUNK as u64, "the file did not grow");
    }
}
