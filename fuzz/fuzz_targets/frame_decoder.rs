//! Feeds arbitrary bytes to the frame decoder, as a hostile client would. Any outcome but a
//! panic (or a hang, or a huge allocation, which libFuzzer also reports) is fine.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_protocol::decode_frame;

fuzz_target!(|data: &[u8]| {
    // The first octet picks the frame_max in force, so both tiny and unlimited limits are hit.
    let Some((&pick, rest)) = data.split_first() else { return };
    let frame_max = [0u32, 4096, 131072, 9][pick as usize % 4];
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(_frame)) = decode_frame(&mut buf, frame_max) {}
});
