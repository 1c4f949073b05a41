//! Headers-exchange matching, as RabbitMQ does it: `x-match` is `all` (default), `any`,
//! `all-with-x` or `any-with-x`; binding arguments starting with `x-` take part only in the
//! `-with-x` modes; a void binding value matches the header's presence; otherwise type and
//! value must both be equal.

use crate::protocol::{FieldTable, FieldValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

impl XMatch {
    /// Reads `x-match`; `Err` carries the text RabbitMQ answers an invalid value with.
    pub fn from_arguments(args: &FieldTable) -> Result<XMatch, String> {
        match args.get("x-match") {
            None => Ok(XMatch::All),
            Some(v) => match v.as_bytes() {
                Some(b"all") => Ok(XMatch::All),
                Some(b"any") => Ok(XMatch::Any),
                Some(b"all-with-x") => Ok(XMatch::AllWithX),
                Some(b"any-with-x") => Ok(XMatch::AnyWithX),
                _ => Err(format!("Invalid x-match field value {v:?}; expected all, any, all-with-x, or any-with-x")),
            },
        }
    }
}

pub fn matches(binding_args: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = XMatch::from_arguments(binding_args).unwrap_or(XMatch::All);
    let with_x = matches!(mode, XMatch::AllWithX | XMatch::AnyWithX);
    let empty = FieldTable::new();
    let headers = headers.unwrap_or(&empty);
    let mut wanted =
        binding_args.iter().filter(|(k, _)| k.as_bytes() != b"x-match" && (with_x || !k.as_bytes().starts_with(b"x-")));
    let one = |(k, v): (&crate::protocol::ShortStr, &FieldValue)| match headers.get(k.as_str().unwrap_or("")) {
        None => false,
        Some(_) if *v == FieldValue::Void => true,
        Some(h) => h == v,
    };
    match mode {
        XMatch::All | XMatch::AllWithX => wanted.all(one),
        XMatch::Any | XMatch::AnyWithX => wanted.any(one),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ShortStr;

    fn table(pairs: &[(&'static str, FieldValue)]) -> FieldTable {
        FieldTable(pairs.iter().map(|(k, v)| (ShortStr::from_static(k), v.clone())).collect())
    }

    #[test]
    fn all_any_and_x_keys() {
        let h = table(&[("format", "pdf".into()), ("type", "report".into()), ("x-tag", "1".into())]);
        let all = table(&[("format", "pdf".into()), ("type", "report".into())]);
        assert!(matches(&all, Some(&h)));
        let all_miss = table(&[("format", "pdf".into()), ("type", "log".into())]);
        assert!(!matches(&all_miss, Some(&h)));
        let mut any = all_miss.clone();
        any.insert(ShortStr::from_static("x-match"), "any".into());
        assert!(matches(&any, Some(&h)));
        let x_only = table(&[("x-match", "any".into()), ("x-tag", "1".into())]);
        assert!(!matches(&x_only, Some(&h)), "x- keys are ignored without -with-x");
        let x_with = table(&[("x-match", "any-with-x".into()), ("x-tag", "1".into())]);
        assert!(matches(&x_with, Some(&h)));
        let presence = table(&[("type", FieldValue::Void)]);
        assert!(matches(&presence, Some(&h)));
        let typed = table(&[("n", FieldValue::I32(1))]);
        assert!(!matches(&typed, Some(&table(&[("n", FieldValue::I64(1))]))), "types must match");
        assert!(matches(&table(&[]), None), "all of nothing");
        assert!(!matches(&table(&[("x-match", "any".into())]), None), "any of nothing");
    }
}
