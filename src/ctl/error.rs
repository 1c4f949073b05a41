//! What a failed command exits with. The codes are BSD's sysexits, as rabbitmqctl uses them, so
//! scripts written against rabbitmqctl read ours the same way:
//!
//! | code | when |
//! | --- | --- |
//! | 64 (usage) | bad command line: unknown command, option or column, missing argument |
//! | 65 (data error) | the input or the request was invalid: malformed JSON, the API answered 400 or another 4xx not listed here, or the virtual host does not exist |
//! | 66 (no input) | the file to import cannot be read |
//! | 67 (no such user) | the user named does not exist (`delete_user`, `change_password`, `set_permissions`, ...) |
//! | 69 (unavailable) | the API cannot be reached (refused, unknown host), answered 503, or the object was not found (404; rabbitmqctl also exits 69 for a missing queue or policy) |
//! | 70 (software) | the API answered 5xx or something that is not its JSON |
//! | 73 (can't create) | the export file cannot be written |
//! | 74 (I/O error) | standard output cannot be written |
//! | 75 (temporary failure) | a request timed out, or `await_startup` gave up |
//! | 77 (no permission) | the API answered 401 or 403: wrong credentials, or the user lacks the rights |

use std::fmt;

/// sysexits(3) codes; the subset the ctl uses.
pub mod code {
    pub const USAGE: u8 = 64;
    pub const DATA: u8 = 65;
    pub const NO_INPUT: u8 = 66;
    pub const NO_USER: u8 = 67;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const CANT_CREATE: u8 = 73;
    pub const IO_ERR: u8 = 74;
    pub const TEMP_FAIL: u8 = 75;
    pub const NO_PERM: u8 = 77;
}

/// A failed command: what to print after `Error: ` and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub code: u8,
    pub message: String,
}

impl CtlError {
    pub fn new(code: u8, message: impl Into<String>) -> CtlError {
        CtlError { code, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> CtlError {
        CtlError::new(code::USAGE, message)
    }

    pub fn data(message: impl Into<String>) -> CtlError {
        CtlError::new(code::DATA, message)
    }
}

/// The message of the error a write to a closed pipe gives (`warren ctl list_queues | head`):
/// `run` ends quietly on it instead of reporting a failure nobody needs to hear about.
pub const BROKEN_PIPE: &str = "standard output was closed";

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CtlError {}
