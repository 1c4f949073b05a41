//! AMQP string types. Both hold `Bytes` sliced from the received frame, so decoding a method
//! copies no strings; the protocol does not promise UTF-8, so neither do these types.

use bytes::Bytes;
use std::fmt;

use super::error::AmqpError;

/// A short string: at most 255 octets (the limit is enforced on construction).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortStr(Bytes);

impl ShortStr {
    pub const MAX_LEN: usize = 255;
    pub const EMPTY: ShortStr = ShortStr(Bytes::new());

    /// For names fixed in the code; longer than 255 octets is a programming error.
    pub const fn from_static(s: &'static str) -> ShortStr {
        assert!(s.len() <= Self::MAX_LEN, "short string longer than 255 octets");
        ShortStr(Bytes::from_static(s.as_bytes()))
    }

    pub fn from_bytes(b: Bytes) -> Result<ShortStr, AmqpError> {
        if b.len() > Self::MAX_LEN {
            return Err(AmqpError::syntax_error(format!("short string of {} octets (max 255)", b.len())));
        }
        Ok(ShortStr(b))
    }

    /// Wraps bytes known to be at most 255 long (the decoder reads them after a u8 length).
    pub(crate) fn from_wire(b: Bytes) -> ShortStr {
        debug_assert!(b.len() <= Self::MAX_LEN);
        ShortStr(b)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl TryFrom<&str> for ShortStr {
    type Error = AmqpError;
    fn try_from(s: &str) -> Result<Self, AmqpError> {
        ShortStr::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<String> for ShortStr {
    type Error = AmqpError;
    fn try_from(s: String) -> Result<Self, AmqpError> {
        ShortStr::from_bytes(Bytes::from(s))
    }
}

// `Bytes` hashes and compares as its slice, so maps keyed by `ShortStr` can be searched with a
// plain `&[u8]` (a routing key, a header value) without building a `ShortStr` first.
impl std::borrow::Borrow<[u8]> for ShortStr {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq<str> for ShortStr {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl serde::Serialize for ShortStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A long string: up to 2^32-1 octets, binary-safe.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct LongStr(Bytes);

impl LongStr {
    pub const EMPTY: LongStr = LongStr(Bytes::new());

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl From<Bytes> for LongStr {
    fn from(b: Bytes) -> LongStr {
        LongStr(b)
    }
}

impl From<&str> for LongStr {
    fn from(s: &str) -> LongStr {
        LongStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for LongStr {
    fn from(s: String) -> LongStr {
        LongStr(Bytes::from(s))
    }
}

impl From<Vec<u8>> for LongStr {
    fn from(v: Vec<u8>) -> LongStr {
        LongStr(Bytes::from(v))
    }
}

impl fmt::Debug for LongStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl serde::Serialize for LongStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_refuse_more_than_255_octets() {
        assert!(ShortStr::try_from("a".repeat(255)).is_ok());
        let err = ShortStr::try_from("a".repeat(256)).unwrap_err();
        assert_eq!(err.code, crate::ReplyCode::SyntaxError);
        assert_eq!(ShortStr::from_static("amq.direct"), "amq.direct");
    }
}
