//! Start-up: the records of a segment past the checkpoint, read back for their index entries
//! to be written again (see the module above).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use super::{Location, Replayed, RECORD_HEADER};

/// Reads the whole records of segment `id` from `start` into `out`, up to the end of the file,
/// the zeros of a prepared segment's unused part, or the first record that is torn or fails
/// its CRC (a crash while it was being written). Reads 1 MiB at a time, whatever the segment's
/// size.
pub(super) fn replay(file: &File, id: u32, start: u64, out: &mut Vec<Replayed>) -> io::Result<()> {
    let len = file.metadata()?.len();
    if start >= len {
        return Ok(());
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(start))?;
    let mut at = start;
    // The record after its CRC: what the CRC covers.
    let mut record = Vec::new();
    let clean = loop {
        if at + RECORD_HEADER as u64 > len {
            break at == len;
        }
        let mut header = [0u8; RECORD_HEADER];
        reader.read_exact(&mut header)?;
        let word = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let (crc, entry_len, body_len) = (word(0), word(4) as usize, word(8) as usize);
        if header.iter().all(|&b| b == 0) {
            // A real record has an entry: these are the zeros a segment was prepared with.
            break true;
        }
        let size = (entry_len + body_len) as u64;
        if at + RECORD_HEADER as u64 + size > len {
            break false;
        }
        record.clear();
        record.extend_from_slice(&header[4..]);
        record.resize(RECORD_HEADER - 4 + entry_len + body_len, 0);
        reader.read_exact(&mut record[RECORD_HEADER - 4..])?;
        if crc32c::crc32c(&record) != crc {
            break false;
        }
        let entry_at = RECORD_HEADER - 4;
        let body_at = at + (RECORD_HEADER + entry_len) as u64;
        out.push(Replayed {
            queue: u64::from_be_bytes(header[12..20].try_into().expect("8 bytes")),
            seq: u64::from_be_bytes(header[20..28].try_into().expect("8 bytes")),
            at: Location { segment: id, offset: body_at as u32, len: body_len as u32 },
            entry: record[entry_at..entry_at + entry_len].to_vec(),
        });
        at += RECORD_HEADER as u64 + size;
    };
    if !clean {
        tracing::warn!(segment = id, at, "message segment ends in a torn record; the rest is ignored");
    }
    Ok(())
}
