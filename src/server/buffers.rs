//! How much memory a connection's read buffer and outbound buffer hold: sized to the traffic,
//! given back when it stops.
//!
//! A buffer starts at [`MIN`] and doubles (up to [`MAX`]) whenever a read filled all the room
//! it had, or a write batch was at least as large as the buffer's size, so a busy connection
//! reaches the size that keeps syscalls large within a few rounds and stays there. It halves
//! when what moves through it uses a quarter or less. An empty buffer much larger than that size
//! is released (dropped, not kept for later): an idle connection holds at most one small buffer
//! instead of 64 KiB ones it needed once (for 1,000 idle connections the difference between
//! about 13 and 85 KiB each, docs/benchmarks.md S7). A busy connection rarely has an empty
//! oversized buffer, so it keeps its allocation and pays nothing per message.

use bytes::BytesMut;

/// The smallest size: room for a handshake frame or a few small methods.
pub(super) const MIN: usize = 1024;
/// The largest size a buffer grows to for reads and write batches (frames may still be larger).
pub(super) const MAX: usize = 64 * 1024;

/// The adaptive size of one buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct BufferSize {
    want: usize,
}

impl Default for BufferSize {
    fn default() -> Self {
        BufferSize { want: MIN }
    }
}

impl BufferSize {
    /// How much room the buffer should have before the next read (or hold for the next batch).
    pub(super) fn want(&self) -> usize {
        self.want
    }

    /// After `n` bytes went through a buffer that had room for `room`: grows when they filled
    /// it, shrinks when they used a quarter of the size or less.
    pub(super) fn record(&mut self, n: usize, room: usize) {
        if n >= room {
            self.want = (self.want * 2).min(MAX);
        } else if n <= self.want / 4 {
            self.want = (self.want / 2).max(MIN);
        }
    }

    /// Back to the smallest size (the connection went quiet).
    pub(super) fn reset(&mut self) {
        self.want = MIN;
    }

    /// Releases `buf` if it is empty and holds more than twice the current size: the
    /// allocation goes back to the allocator (or stays only with the `Bytes` still sliced
    /// from it), and the next [`reserve`](Self::reserve) takes one of the current size.
    pub(super) fn release_if_oversized(&self, buf: &mut BytesMut) {
        if buf.is_empty() && buf.capacity() > 2 * self.want {
            *buf = BytesMut::new();
        }
    }

    /// Makes room for the next read: releases an oversized empty buffer, then reserves the
    /// current size.
    pub(super) fn reserve(&self, buf: &mut BytesMut) {
        self.release_if_oversized(buf);
        buf.reserve(self.want);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_small_and_grows_while_reads_fill_the_buffer() {
        let mut size = BufferSize::default();
        let mut buf = BytesMut::new();
        size.reserve(&mut buf);
        assert!(buf.capacity() >= MIN && buf.capacity() < 2 * MIN, "a new connection does not get 64 KiB");
        for _ in 0..10 {
            size.record(size.want(), size.want());
        }
        assert_eq!(size.want(), MAX);
    }

    #[test]
    fn an_idle_buffer_that_grew_large_is_given_back() {
        let mut size = BufferSize::default();
        for _ in 0..10 {
            size.record(size.want(), size.want());
        }
        let mut buf = BytesMut::new();
        size.reserve(&mut buf);
        assert!(buf.capacity() >= MAX);
        // The traffic stops: heartbeats only.
        for _ in 0..10 {
            size.record(8, buf.capacity());
        }
        assert_eq!(size.want(), MIN);
        size.reserve(&mut buf);
        assert!(buf.capacity() < 2 * MIN, "an idle connection keeps {} bytes of buffer", buf.capacity());
    }

    #[test]
    fn a_busy_buffer_is_kept() {
        let mut size = BufferSize::default();
        for _ in 0..10 {
            size.record(size.want(), size.want());
        }
        let mut buf = BytesMut::new();
        size.reserve(&mut buf);
        let before = buf.as_ptr();
        // Reads of a few KiB: the size stays, and so does the allocation.
        for _ in 0..10 {
            buf.extend_from_slice(&[0u8; 20 * 1024]);
            size.record(20 * 1024, buf.capacity());
            buf.clear();
            size.reserve(&mut buf);
        }
        assert_eq!(size.want(), MAX);
        assert_eq!(buf.as_ptr(), before, "no new allocation while the connection is busy");
    }

    #[test]
    fn a_buffer_holding_a_partial_frame_is_kept() {
        let size = BufferSize::default();
        let mut buf = BytesMut::with_capacity(MAX);
        buf.extend_from_slice(b"half a frame");
        size.release_if_oversized(&mut buf);
        assert_eq!(&buf[..], b"half a frame");
    }
}
