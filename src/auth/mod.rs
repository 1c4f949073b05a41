//! Users and authentication. For now: an in-memory user table holding RabbitMQ's default
//! `guest`/`guest`, which (as in RabbitMQ) may only log in from loopback. Permissions, user
//! management and RabbitMQ-compatible password hashing are listed as missing in the README.

pub mod password;
pub mod sasl;

use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    password: String,
    /// RabbitMQ's `loopback_users`: may connect only from 127.0.0.0/8 or ::1.
    pub loopback_only: bool,
}

#[derive(Debug, Default)]
pub struct Users {
    users: HashMap<String, User>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LoginRefused {
    /// Unknown user or wrong password (never say which).
    BadCredentials,
    /// A loopback-only user connecting from elsewhere.
    NotFromLoopback,
}

impl Users {
    pub fn with_default_guest() -> Users {
        let mut u = Users::default();
        u.users.insert(
            "guest".to_string(),
            User { name: "guest".to_string(), password: "guest".to_string(), loopback_only: true },
        );
        u
    }

    pub fn authenticate(&self, name: &str, password: &str, peer: IpAddr) -> Result<&User, LoginRefused> {
        let user = self.users.get(name).ok_or(LoginRefused::BadCredentials)?;
        if !constant_time_eq(user.password.as_bytes(), password.as_bytes()) {
            return Err(LoginRefused::BadCredentials);
        }
        if user.loopback_only && !peer.is_loopback() && !is_mapped_loopback(peer) {
            return Err(LoginRefused::NotFromLoopback);
        }
        Ok(user)
    }
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_only_from_loopback() {
        let u = Users::with_default_guest();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let far: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(u.authenticate("guest", "guest", lo).is_ok());
        assert!(u.authenticate("guest", "guest", "::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert_eq!(u.authenticate("guest", "nope", lo).unwrap_err(), LoginRefused::BadCredentials);
        assert_eq!(u.authenticate("bob", "guest", lo).unwrap_err(), LoginRefused::BadCredentials);
        assert_eq!(u.authenticate("guest", "guest", far).unwrap_err(), LoginRefused::NotFromLoopback);
    }
}
