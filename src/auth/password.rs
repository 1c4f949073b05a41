//! RabbitMQ's password hashes (`rabbit_password`, `rabbit_password_hashing_*`): a 4-byte random
//! salt, then H(salt ‖ UTF-8 password), kept as base64(salt ‖ digest). Hashes travel between
//! RabbitMQ and Warren in definitions files and through the management API, so the format is
//! RabbitMQ's to the byte (checked against RabbitMQ 3.10.8 for all three algorithms).

use std::fmt;
use std::io::Read;

use base64::Engine;
use sha2::Digest;

/// The hash function of a stored password, under the names RabbitMQ gives its modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashingAlgorithm {
    /// RabbitMQ's default since 3.6.
    #[default]
    Sha256,
    Sha512,
    /// What RabbitMQ before 3.6 used; still accepted for imported definitions.
    Md5,
}

impl HashingAlgorithm {
    pub const ALL: [HashingAlgorithm; 3] = [HashingAlgorithm::Sha256, HashingAlgorithm::Sha512, HashingAlgorithm::Md5];

    /// RabbitMQ's name: `rabbit_password_hashing_sha256` and so on.
    pub fn name(self) -> &'static str {
        match self {
            HashingAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashingAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashingAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// The algorithm RabbitMQ calls `name`; `None` for anything else.
    pub fn parse(name: &str) -> Option<HashingAlgorithm> {
        HashingAlgorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(salt);
            d.update(password);
            d.finalize().to_vec()
        }
        match self {
            HashingAlgorithm::Sha256 => run::<sha2::Sha256>(salt, password),
            HashingAlgorithm::Sha512 => run::<sha2::Sha512>(salt, password),
            HashingAlgorithm::Md5 => run::<md5::Md5>(salt, password),
        }
    }
}

impl fmt::Display for HashingAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Octets of salt in front of the digest.
pub const SALT_LEN: usize = 4;

/// A `password_hash` that is not base64 (RabbitMQ's `not_base64`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not_base64")]
pub struct NotBase64;

/// A stored password: its algorithm and salt ‖ digest, decoded once so that a login only hashes.
/// Empty means the user has no password: password logins always fail (RabbitMQ's
/// `clear_password`, or `password_hash: ""` through the API).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PasswordHash {
    algorithm: HashingAlgorithm,
    bytes: Vec<u8>,
}

impl PasswordHash {
    /// No password.
    pub fn none(algorithm: HashingAlgorithm) -> PasswordHash {
        PasswordHash { algorithm, bytes: Vec::new() }
    }

    /// `password` hashed with a fresh random salt.
    pub fn new(algorithm: HashingAlgorithm, password: &str) -> PasswordHash {
        PasswordHash::with_salt(algorithm, random_salt(), password)
    }

    pub fn with_salt(algorithm: HashingAlgorithm, salt: [u8; SALT_LEN], password: &str) -> PasswordHash {
        let mut bytes = salt.to_vec();
        bytes.extend(algorithm.digest(&salt, password.as_bytes()));
        PasswordHash { algorithm, bytes }
    }

    /// A hash as RabbitMQ shows it (`password_hash`); `""` is no password. Taken as given, as
    /// RabbitMQ does: a value of the wrong length simply never matches.
    pub fn from_base64(algorithm: HashingAlgorithm, encoded: &str) -> Result<PasswordHash, NotBase64> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| NotBase64)?;
        Ok(PasswordHash { algorithm, bytes })
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    pub fn algorithm(&self) -> HashingAlgorithm {
        self.algorithm
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether `password` hashes to this. Compares in constant time, so how long a refusal
    /// takes says nothing about how much of the digest matched.
    pub fn verify(&self, password: &str) -> bool {
        if self.bytes.len() <= SALT_LEN {
            return false;
        }
        let (salt, digest) = self.bytes.split_at(SALT_LEN);
        constant_time_eq(&self.algorithm.digest(salt, password.as_bytes()), digest)
    }
}

/// The hash itself stays out of logs: only what kind of hash it is.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({}, {} octets)", self.algorithm.name(), self.bytes.len())
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Four random octets. A salt must differ between users and hashes; it need not be secret. The
/// kernel's generator (`/dev/urandom`, what `getrandom` reads) gives that without a new
/// dependency; should it be unreadable (a bare chroot), std's `RandomState` — keyed from the
/// same OS source per thread, and stepped for every instance — hashing the clock still gives
/// salts that do not repeat.
fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut salt)).is_ok() {
        return salt;
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    (h.finish() as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: [u8; 4] = [0x90, 0x8D, 0xC6, 0x0A];

    #[test]
    fn hashes_match_rabbitmq() {
        // Computed independently and each accepted for a login by RabbitMQ 3.10.8.
        let vectors = [
            (HashingAlgorithm::Sha256, "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"),
            (
                HashingAlgorithm::Sha512,
                "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc=",
            ),
            (HashingAlgorithm::Md5, "kI3GChNpte2FApYFXScl+0dIluk="),
        ];
        for (alg, expected) in vectors {
            let h = PasswordHash::with_salt(alg, SALT, "test12");
            assert_eq!(h.to_base64(), expected, "{alg}");
            let parsed = PasswordHash::from_base64(alg, expected).unwrap();
            assert!(parsed.verify("test12"), "{alg}");
            assert!(!parsed.verify("test13"), "{alg}");
        }
    }

    #[test]
    fn verifies_a_hash_rabbitmq_made() {
        let h = PasswordHash::from_base64(HashingAlgorithm::Sha256, "27cx5+wEi8R8uwTeTr3hk5azuV3yYxxAtwPPhCyrbdsxVhqq")
            .unwrap();
        assert!(h.verify("foobarbaz"));
        assert!(!h.verify("foobarba"));
        // The same bytes under another algorithm never match.
        let md5 = PasswordHash::from_base64(HashingAlgorithm::Md5, &h.to_base64()).unwrap();
        assert!(!md5.verify("foobarbaz"));
    }

    #[test]
    fn fresh_hashes_are_salted_and_verify() {
        let (a, b) =
            (PasswordHash::new(HashingAlgorithm::Sha256, "pw"), PasswordHash::new(HashingAlgorithm::Sha256, "pw"));
        assert_eq!(a.to_base64().len(), 48);
        assert_ne!(a, b, "two hashes of one password differ by their salt");
        assert!(a.verify("pw") && b.verify("pw"));
        assert!(!a.verify(""));
    }

    #[test]
    fn no_password_and_malformed_hashes_never_match() {
        let none = PasswordHash::from_base64(HashingAlgorithm::Sha256, "").unwrap();
        assert!(none.is_empty());
        assert!(!none.verify("") && !none.verify("guest"));
        let short = PasswordHash::from_base64(HashingAlgorithm::Sha256, "kI3GCg==").unwrap();
        assert!(!short.verify(""), "salt only");
        assert_eq!(PasswordHash::from_base64(HashingAlgorithm::Sha256, "abc"), Err(NotBase64));
        assert_eq!(PasswordHash::from_base64(HashingAlgorithm::Sha256, "a b!"), Err(NotBase64));
    }

    #[test]
    fn algorithm_names() {
        for alg in HashingAlgorithm::ALL {
            assert_eq!(HashingAlgorithm::parse(alg.name()), Some(alg));
        }
        assert_eq!(HashingAlgorithm::default().name(), "rabbit_password_hashing_sha256");
        assert_eq!(HashingAlgorithm::parse("sha256"), None);
        assert_eq!(HashingAlgorithm::parse("rabbit_password_hashing_bcrypt"), None);
    }

    #[test]
    fn debug_does_not_show_the_hash() {
        let h = PasswordHash::with_salt(HashingAlgorithm::Sha256, SALT, "test12");
        assert_eq!(format!("{h:?}"), "PasswordHash(rabbit_password_hashing_sha256, 36 octets)");
    }
}
