//! SASL responses from `connection.start-ok`: the user name and password of the `PLAIN` and
//! `AMQPLAIN` mechanisms, the two Warren offers. What a failure means on the wire (the reply code
//! and RabbitMQ's text) is the handshake's business; this module only parses.

use bytes::Bytes;

use crate::protocol::FieldTable;

/// The mechanisms offered in `connection.start`, space-separated as the field wants them.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";
/// The mechanisms offered on a TLS connection: `EXTERNAL` too (the user named by the client
/// certificate; the handshake handles it, as it carries no credentials to parse).
pub const TLS_MECHANISMS: &str = "PLAIN AMQPLAIN EXTERNAL";

/// Why a SASL response gives no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// The response does not parse for its mechanism (the text says how).
    Malformed(&'static str),
    /// A mechanism we never offered.
    UnknownMechanism(String),
}

/// Splits a SASL response into user and password.
pub fn credentials(mechanism: &[u8], response: &[u8]) -> Result<(String, String), SaslError> {
    match mechanism {
        b"PLAIN" => plain(response),
        b"AMQPLAIN" => amqplain(response),
        other => Err(SaslError::UnknownMechanism(String::from_utf8_lossy(other).into_owned())),
    }
}

/// `PLAIN` (RFC 4616): authzid \0 authcid \0 password; the authorization identity is ignored.
fn plain(response: &[u8]) -> Result<(String, String), SaslError> {
    let mut parts = response.splitn(3, |&b| b == 0);
    let (_authz, user, pass) = (parts.next(), parts.next(), parts.next());
    match (user, pass) {
        (Some(u), Some(p)) => Ok((String::from_utf8_lossy(u).into_owned(), String::from_utf8_lossy(p).into_owned())),
        _ => Err(SaslError::Malformed("malformed PLAIN response")),
    }
}

/// `AMQPLAIN`: field-table entries (without the table's length) holding `LOGIN` and `PASSWORD`.
fn amqplain(response: &[u8]) -> Result<(String, String), SaslError> {
    let t = FieldTable::decode_entries(&Bytes::copy_from_slice(response))
        .map_err(|_| SaslError::Malformed("malformed AMQPLAIN response"))?;
    let get = |k| t.get(k).and_then(|v| v.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned());
    match (get("LOGIN"), get("PASSWORD")) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err(SaslError::Malformed("AMQPLAIN response without LOGIN and PASSWORD")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table entries as clients write AMQPLAIN: short-string key, `S` tag, long string.
    fn amqplain_entries(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in entries {
            out.push(k.len() as u8);
            out.extend_from_slice(k.as_bytes());
            out.push(b'S');
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out
    }

    fn creds(u: &str, p: &str) -> Result<(String, String), SaslError> {
        Ok((u.to_string(), p.to_string()))
    }

    #[test]
    fn plain_takes_the_authentication_identity_and_password() {
        assert_eq!(credentials(b"PLAIN", b"\0guest\0guest"), creds("guest", "guest"));
        // The authorization identity is ignored; the password may contain NUL.
        assert_eq!(credentials(b"PLAIN", b"admin\0bob\0pa\0ss"), creds("bob", "pa\0ss"));
        assert_eq!(credentials(b"PLAIN", b"\0\0"), creds("", ""));
    }

    #[test]
    fn plain_without_two_separators_is_malformed() {
        for bad in [&b""[..], b"guest", b"\0guest"] {
            assert_eq!(credentials(b"PLAIN", bad), Err(SaslError::Malformed("malformed PLAIN response")), "{bad:?}");
        }
    }

    #[test]
    fn amqplain_reads_login_and_password_in_any_order() {
        let r = amqplain_entries(&[("LOGIN", "guest"), ("PASSWORD", "secret")]);
        assert_eq!(credentials(b"AMQPLAIN", &r), creds("guest", "secret"));
        let r = amqplain_entries(&[("PASSWORD", "secret"), ("other", "x"), ("LOGIN", "bob")]);
        assert_eq!(credentials(b"AMQPLAIN", &r), creds("bob", "secret"));
    }

    #[test]
    fn amqplain_malformed_or_incomplete() {
        let missing = amqplain_entries(&[("LOGIN", "guest")]);
        assert_eq!(
            credentials(b"AMQPLAIN", &missing),
            Err(SaslError::Malformed("AMQPLAIN response without LOGIN and PASSWORD"))
        );
        let mut truncated = amqplain_entries(&[("LOGIN", "guest"), ("PASSWORD", "secret")]);
        truncated.truncate(truncated.len() - 2);
        assert_eq!(credentials(b"AMQPLAIN", &truncated), Err(SaslError::Malformed("malformed AMQPLAIN response")));
        assert_eq!(credentials(b"AMQPLAIN", b"\x05LOGIN?"), Err(SaslError::Malformed("malformed AMQPLAIN response")));
    }

    #[test]
    fn other_mechanisms_are_unknown() {
        assert_eq!(credentials(b"EXTERNAL", b""), Err(SaslError::UnknownMechanism("EXTERNAL".into())));
        assert_eq!(credentials(b"plain", b"\0a\0b"), Err(SaslError::UnknownMechanism("plain".into())));
    }
}
