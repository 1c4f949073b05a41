//! Proptest strategies for every method, property set and (nested) field table. The per-method
//! strategies are generated from the spec by `build.rs`; the building blocks are here.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::strategy::Union;

use super::field_table::{FieldTable, FieldValue};
use super::methods::*;
use super::types::{LongStr, ShortStr};

include!(concat!(env!("OUT_DIR"), "/amqp_strategies.rs"));

pub fn arb_shortstr() -> impl Strategy<Value = ShortStr> {
    prop::collection::vec(any::<u8>(), 0..=255).prop_map(|v| ShortStr::from_bytes(Bytes::from(v)).expect("<= 255"))
}

pub fn arb_longstr() -> impl Strategy<Value = LongStr> {
    prop::collection::vec(any::<u8>(), 0..600).prop_map(LongStr::from)
}

/// Floats that compare equal to themselves (NaN never does, which would fail round trips for
/// the wrong reason; its bits still survive, see the unit tests).
fn arb_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("not NaN", |f| !f.is_nan())
}

fn arb_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("not NaN", |f| !f.is_nan())
}

fn arb_scalar() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        arb_f32().prop_map(FieldValue::F32),
        arb_f64().prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        arb_longstr().prop_map(FieldValue::LongStr),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|v| FieldValue::Bytes(Bytes::from(v))),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ]
}

/// Any field value, tables and arrays nested up to 6 levels.
pub fn arb_field_value() -> impl Strategy<Value = FieldValue> {
    arb_scalar().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(FieldValue::Array),
            prop::collection::vec((arb_shortstr(), inner), 0..8).prop_map(|e| FieldValue::Table(FieldTable(e))),
        ]
    })
}

pub fn arb_table() -> impl Strategy<Value = FieldTable> {
    prop::collection::vec((arb_shortstr(), arb_field_value()), 0..6).prop_map(FieldTable)
}
