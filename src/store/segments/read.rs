//! Reading bodies back from their segments. A consumer reaching a backlog asks for a run of
//! messages that were appended one after the other: their bodies are read with one `pread`
//! into one buffer, and each body is a slice of it (the few bytes of record header and index
//! entry between two bodies are read along).

use std::io;
use std::os::unix::fs::FileExt;

use bytes::{Bytes, BytesMut};

use super::{Location, Segments};

/// Bytes between two bodies still read in one go (a record's header and index entry are well
/// under it); further apart they are read apart.
const MAX_GAP: u64 = 4096;
/// The most one read of several bodies takes.
const MAX_READ: u64 = 1 << 20;

impl Segments {
    /// The bodies at `places`, in their order (`None` where the segment is gone or too short).
    pub fn read(&self, places: &[Location]) -> io::Result<Vec<Option<Bytes>>> {
        let mut order: Vec<usize> = (0..places.len()).collect();
        order.sort_unstable_by_key(|&i| (places[i].segment, places[i].offset));
        let mut out = vec![None; places.len()];
        let mut group = Vec::new();
        for i in order {
            if let Some(&first) = group.first() {
                let (a, b): (&Location, &Location) = (&places[first], &places[i]);
                let end = span_end(&places[*group.last().expect("not empty")]);
                let joins = a.segment == b.segment
                    && u64::from(b.offset) <= end + MAX_GAP
                    && span_end(b).max(end) - u64::from(a.offset) <= MAX_READ;
                if !joins {
                    self.read_group(places, &group, &mut out)?;
                    group.clear();
                }
            }
            group.push(i);
        }
        if !group.is_empty() {
            self.read_group(places, &group, &mut out)?;
        }
        Ok(out)
    }

    /// Reads the bodies of `group` (indexes into `places`, in one segment, by offset) with one
    /// `pread`.
    fn read_group(&self, places: &[Location], group: &[usize], out: &mut [Option<Bytes>]) -> io::Result<()> {
        let first = places[group[0]];
        let Some(file) = self.file(first.segment) else { return Ok(()) };
        let from = u64::from(first.offset);
        let to = group.iter().map(|&i| span_end(&places[i])).max().unwrap_or(from);
        // One large body: no larger than the file (an index entry could be corrupt; within a
        // prepared segment's zeros such an entry reads zeros, which the body's length in the
        // entry then does not catch either: the index is trusted that far).
        if to - from > MAX_READ && to > file.metadata()?.len() {
            return Ok(());
        }
        let mut buf = BytesMut::zeroed((to - from) as usize);
        let got = read_at_most(&file, &mut buf, from)?;
        buf.truncate(got);
        let buf = buf.freeze();
        for &i in group {
            let (start, end) = ((places[i].offset as u64 - from) as usize, (span_end(&places[i]) - from) as usize);
            if end <= buf.len() {
                out[i] = Some(buf.slice(start..end));
            }
        }
        Ok(())
    }
}

fn span_end(at: &Location) -> u64 {
    u64::from(at.offset) + u64::from(at.len)
}

/// Fills `buf` from `offset`, short only at the end of the file.
fn read_at_most(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
