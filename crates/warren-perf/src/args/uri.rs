//! The `--uri` flag: PerfTest's and the AMQP clients' `amqp://user:password@host:port/vhost`.

use std::fmt;

/// An `amqp://` URI: credentials, host, port and (percent-decoded) virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUri {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub vhost: String,
}

impl AmqpUri {
    pub fn parse(uri: &str) -> Result<AmqpUri, String> {
        let bad = |why: &str| format!("bad --uri '{uri}': {why}");
        let rest = uri.strip_prefix("amqp://").ok_or_else(|| bad("only amqp:// is supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => ("guest".to_string(), "guest".to_string()),
            Some(ui) => {
                let (u, p) = ui.split_once(':').unwrap_or((ui, ""));
                (
                    percent_decode(u).ok_or_else(|| bad("bad user"))?,
                    percent_decode(p).ok_or_else(|| bad("bad password"))?,
                )
            }
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [IPv6]:port
            let (h, after) = h.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            None | Some("") => 5672,
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
        };
        let host = if host.is_empty() { "127.0.0.1".to_string() } else { host };
        let vhost = match path {
            // amqp://host (no path) and amqp://host/ (empty path) both mean the default vhost.
            None | Some("") => "/".to_string(),
            Some(p) => percent_decode(p).ok_or_else(|| bad("bad vhost"))?,
        };
        Ok(AmqpUri { user, password, host, port, vhost })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for AmqpUri {
    /// Without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "amqp://{}@{}:{}/{}", self.user, self.host, self.port, self.vhost.replace('/', "%2F"))
    }
}
