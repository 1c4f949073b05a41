//! Property tests: encode∘decode is the identity for every method, every property combination
//! and arbitrary nested tables; and no byte string makes the frame decoder panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::frame::{decode_frame, encode_content_header, encode_method, Frame};
use super::strategies::{arb_method, arb_properties, arb_table};
use super::{field_table, wire};

/// Decodes frames until the decoder wants more; returns them and how many octets were left.
fn decode_all(mut buf: BytesMut, frame_max: u32) -> Result<(Vec<Frame>, usize), super::AmqpError> {
    let mut frames = Vec::new();
    while let Some(f) = decode_frame(&mut buf, frame_max)? {
        frames.push(f);
    }
    Ok((frames, buf.len()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_method_round_trips(method in arb_method(), channel in any::<u16>()) {
        let mut buf = BytesMut::new();
        encode_method(&mut buf, channel, &method);
        let bytes = buf.clone();
        let (frames, left) = decode_all(buf, 0).expect("our own encoding decodes");
        prop_assert_eq!(left, 0);
        prop_assert_eq!(frames.len(), 1);
        prop_assert_eq!(&frames[0], &Frame::Method { channel, method: method.clone() });
        let mut again = BytesMut::new();
        encode_method(&mut again, channel, &method);
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn every_property_combination_round_trips(props in arb_properties(), body_size in any::<u64>()) {
        let mut buf = BytesMut::new();
        encode_content_header(&mut buf, 7, body_size, &props);
        let (frames, left) = decode_all(buf, 0).expect("decodes");
        prop_assert_eq!(left, 0);
        match &frames[..] {
            [Frame::Header { channel: 7, header }] => {
                prop_assert_eq!(header.body_size, body_size);
                prop_assert_eq!(&*header.properties, &props);
            }
            other => prop_assert!(false, "unexpected frames {:?}", other),
        }
    }

    #[test]
    fn nested_tables_round_trip(table in arb_table()) {
        let mut buf = BytesMut::new();
        wire::put_table(&mut buf, &table);
        let src = buf.clone().freeze();
        let (rest, back) = field_table::parse_table(&src, &src, 0).expect("decodes");
        prop_assert!(rest.is_empty());
        prop_assert_eq!(back, table);
    }

    /// Arbitrary input: a frame, "need more", or an error; never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), frame_max in prop_oneof![Just(0u32), Just(4096), any::<u32>()]) {
        let _ = decode_all(BytesMut::from(&bytes[..]), frame_max);
    }

    /// Valid frames cut short are "need more" at every length; flipping any octet of a valid
    /// frame gives a value or an error, never a panic.
    #[test]
    fn truncated_and_corrupted_frames(method in arb_method(), props in arb_properties(), flip in any::<(usize, u8)>()) {
        let mut whole = BytesMut::new();
        encode_method(&mut whole, 1, &method);
        encode_content_header(&mut whole, 1, 3, &props);
        let first_len = {
            let mut b = whole.clone();
            decode_frame(&mut b, 0).expect("valid").expect("complete");
            whole.len() - b.len()
        };
        for cut in 0..first_len {
            prop_assert_eq!(decode_frame(&mut BytesMut::from(&whole[..cut]), 0), Ok(None));
        }
        let mut corrupt = whole.to_vec();
        let at = flip.0 % corrupt.len();
        corrupt[at] ^= flip.1.max(1);
        let _ = decode_all(BytesMut::from(&corrupt[..]), 131072);
    }
}

#[test]
fn nan_survives_bit_for_bit() {
    use super::field_table::FieldValue;
    use super::types::ShortStr;
    let t =
        super::FieldTable(vec![(ShortStr::from_static("n"), FieldValue::F64(f64::from_bits(0x7ff8_dead_beef_0001)))]);
    let mut buf = BytesMut::new();
    wire::put_table(&mut buf, &t);
    let src: Bytes = buf.clone().freeze();
    let (_, back) = field_table::parse_table(&src, &src, 0).unwrap();
    let mut again = BytesMut::new();
    wire::put_table(&mut again, &back);
    assert_eq!(again, buf);
}
