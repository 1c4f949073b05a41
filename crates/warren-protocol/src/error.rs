//! The one error type of the protocol layer, and what the broker sends back.
//!
//! An [`AmqpError`] carries everything a `channel.close` or `connection.close` needs: the reply
//! code, the text (rendered the way RabbitMQ renders it, `NOT_FOUND - no queue 'q' in vhost '/'`,
//! because applications match on it), the class and method that failed, and whether it ends the
//! channel or the whole connection.

use std::borrow::Cow;
use std::fmt;

pub use super::methods::ReplyCode;
use super::methods::{ChannelClose, ConnectionClose, Method};
use super::types::ShortStr;

/// Whether an error closes one channel (soft error) or the whole connection (hard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Channel,
    Connection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: ReplyCode,
    /// The explanation without the `CODE_NAME - ` prefix; see [`AmqpError::reply_text`].
    pub message: Cow<'static, str>,
    pub class_id: u16,
    pub method_id: u16,
    pub scope: Scope,
}

impl AmqpError {
    /// An error with the scope the spec gives its reply code.
    pub fn new(code: ReplyCode, message: impl Into<Cow<'static, str>>) -> AmqpError {
        AmqpError { code, message: message.into(), class_id: 0, method_id: 0, scope: code.scope() }
    }

    /// Same, but closing the connection whatever the code's usual scope (e.g. 403 during the
    /// handshake, or any error on channel 0).
    pub fn connection(code: ReplyCode, message: impl Into<Cow<'static, str>>) -> AmqpError {
        AmqpError { scope: Scope::Connection, ..AmqpError::new(code, message) }
    }

    pub fn frame_error(message: impl Into<Cow<'static, str>>) -> AmqpError {
        AmqpError::new(ReplyCode::FrameError, message)
    }

    pub fn syntax_error(message: impl Into<Cow<'static, str>>) -> AmqpError {
        AmqpError::new(ReplyCode::SyntaxError, message)
    }

    pub fn unexpected_frame(message: impl Into<Cow<'static, str>>) -> AmqpError {
        AmqpError::new(ReplyCode::UnexpectedFrame, message)
    }

    pub fn not_implemented(message: impl Into<Cow<'static, str>>) -> AmqpError {
        AmqpError::new(ReplyCode::NotImplemented, message)
    }

    /// Names the method that failed (sent back as class-id/method-id in the close).
    pub fn in_method(mut self, class_id: u16, method_id: u16) -> AmqpError {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    pub fn is_connection_error(&self) -> bool {
        self.scope == Scope::Connection
    }

    /// `CODE_NAME - message`, as RabbitMQ writes reply texts. Cut to fit a short string.
    pub fn reply_text(&self) -> ShortStr {
        let mut text = format!("{} - {}", self.code.name(), self.message);
        if text.len() > ShortStr::MAX_LEN {
            let mut end = ShortStr::MAX_LEN;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        ShortStr::try_from(text).unwrap_or_default()
    }

    /// The `channel.close` or `connection.close` that reports this error to the peer.
    pub fn to_close_method(&self) -> Method {
        let (reply_code, reply_text) = (self.code.value(), self.reply_text());
        let (class_id, method_id) = (self.class_id, self.method_id);
        match self.scope {
            Scope::Channel => Method::ChannelClose(ChannelClose { reply_code, reply_text, class_id, method_id }),
            Scope::Connection => {
                Method::ConnectionClose(ConnectionClose { reply_code, reply_text, class_id, method_id })
            }
        }
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} - {}", self.code.value(), self.code.name(), self.message)?;
        if self.class_id != 0 {
            match super::methods::method_name(self.class_id, self.method_id) {
                Some(name) => write!(f, " (in {name})")?,
                None => write!(f, " (in class {} method {})", self.class_id, self.method_id)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for AmqpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_have_the_specs_scope() {
        assert_eq!(ReplyCode::PreconditionFailed.scope(), Scope::Channel);
        assert_eq!(ReplyCode::NotFound.scope(), Scope::Channel);
        assert_eq!(ReplyCode::FrameError.scope(), Scope::Connection);
        assert_eq!(ReplyCode::NotAllowed.scope(), Scope::Connection);
        assert_eq!(ReplyCode::from_u16(312), Some(ReplyCode::NoRoute));
        assert_eq!(ReplyCode::from_u16(999), None);
        for code in ReplyCode::ALL {
            assert_eq!(ReplyCode::from_u16(code.value()), Some(*code));
        }
    }

    #[test]
    fn reply_text_is_rabbitmq_shaped_and_fits_a_short_string() {
        let e = AmqpError::new(ReplyCode::NotFound, "no queue 'q' in vhost '/'").in_method(50, 10);
        assert_eq!(e.reply_text().as_bytes(), b"NOT_FOUND - no queue 'q' in vhost '/'");
        assert_eq!(e.to_string(), "404 NOT_FOUND - no queue 'q' in vhost '/' (in queue.declare)");
        let long = AmqpError::new(ReplyCode::PreconditionFailed, "é".repeat(300));
        assert!(long.reply_text().len() <= 255);
        match long.to_close_method() {
            Method::ChannelClose(c) => assert_eq!(c.reply_code, 406),
            other => panic!("expected channel.close, got {other:?}"),
        }
        let hard = AmqpError::connection(ReplyCode::AccessRefused, "login refused");
        assert!(matches!(hard.to_close_method(), Method::ConnectionClose(_)));
    }
}
