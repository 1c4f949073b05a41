//! TLS for the AMQPS listener (RabbitMQ's `listeners.ssl`, port 5671): the server certificate
//! and key, and optionally client certificates verified against a CA (RabbitMQ's
//! `ssl_options.verify = verify_peer` and `fail_if_no_peer_cert`). TLS 1.2 and 1.3, on rustls
//! with the `ring` provider.
//!
//! A connection is served exactly as a plain one once the TLS handshake is done (5 s, RabbitMQ's
//! `ssl_handshake_timeout`): [`TlsConnection`] is a [`Transport`] that also tells the AMQP
//! handshake what SASL `EXTERNAL` needs, the user name out of the client certificate.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::server::transport::{TlsInfo, Transport};

/// How long a client has for the TLS handshake (RabbitMQ's `ssl_handshake_timeout`).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where `EXTERNAL` takes the user name from (RabbitMQ's `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertLoginFrom {
    /// The whole subject, as an RFC 2253 string: `CN=app,O=Acme,C=XX`.
    DistinguishedName,
    /// The subject's common name only, unescaped (several: joined by `,`).
    CommonName,
}

impl CertLoginFrom {
    pub fn parse(s: &str) -> Result<CertLoginFrom, String> {
        match s {
            "distinguished_name" => Ok(CertLoginFrom::DistinguishedName),
            "common_name" => Ok(CertLoginFrom::CommonName),
            other => Err(format!("tls_cert_login_from must be distinguished_name or common_name, not '{other}'")),
        }
    }
}

/// The TLS side of a listener, loaded from the configured files.
#[derive(Clone)]
pub struct TlsSettings {
    pub acceptor: TlsAcceptor,
    /// The rustls configuration (shared with the HTTPS management listener).
    pub server_config: Arc<ServerConfig>,
    pub verify_peer: bool,
    pub login_from: CertLoginFrom,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("verify_peer", &self.verify_peer)
            .field("login_from", &self.login_from)
            .finish_non_exhaustive()
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

fn load_certs(path: &str, what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(format!("cannot load the {what} {path}: {e}")))?;
    if certs.is_empty() {
        return Err(bad(format!("cannot load the {what} {path}: no PEM certificate in it")));
    }
    Ok(certs)
}

impl TlsSettings {
    /// The TLS settings of `config`, or `None` when no certificate and key are configured (the
    /// AMQPS listener is then off). Unreadable or mismatched files are an error naming them.
    pub fn from_config(config: &Config) -> io::Result<Option<TlsSettings>> {
        match (config.tls_cert.is_empty(), config.tls_key.is_empty()) {
            (true, true) => return Ok(None),
            (false, true) => return Err(bad("tls_cert is set but tls_key is not".into())),
            (true, false) => return Err(bad("tls_key is set but tls_cert is not".into())),
            (false, false) => {}
        }
        let login_from = CertLoginFrom::parse(&config.tls_cert_login_from).map_err(bad)?;
        let (chain, key) = load_pair(config)?;
        // ring, not aws-lc-rs (a long C build); ring has no post-quantum key exchange, which
        // rustls 0.23.48 flags by deprecating this constructor.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| bad(format!("TLS: {e}")))?;
        let builder = if config.tls_verify_peer {
            if config.tls_ca.is_empty() {
                return Err(bad(
                    "tls_verify_peer needs tls_ca (the CA certificates client certificates are checked against)".into(),
                ));
            }
            let mut roots = RootCertStore::empty();
            for ca in load_certs(&config.tls_ca, "TLS CA certificate")? {
                roots.add(ca).map_err(|e| bad(format!("cannot use the TLS CA certificate {}: {e}", config.tls_ca)))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.tls_fail_if_no_peer_cert { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|e| bad(format!("TLS client verification: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let server_config = builder.with_single_cert(chain, key).map_err(|e| {
            bad(format!("the TLS certificate {} and key {} do not make a pair: {e}", config.tls_cert, config.tls_key))
        })?;
        let server_config = Arc::new(server_config);
        Ok(Some(TlsSettings {
            acceptor: TlsAcceptor::from(server_config.clone()),
            server_config,
            verify_peer: config.tls_verify_peer,
            login_from,
        }))
    }

    /// Runs the TLS handshake on an accepted socket (within [`TLS_HANDSHAKE_TIMEOUT`]).
    pub async fn accept(&self, socket: TcpStream) -> io::Result<TlsConnection> {
        let peer = socket.peer_addr()?;
        let local = socket.local_addr()?;
        let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.acceptor.accept(socket)).await {
            Ok(s) => s?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
        };
        let cert_login = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| cert_login_name(cert, self.login_from));
        let info = TlsInfo { verify_peer: self.verify_peer, cert_login };
        Ok(TlsConnection { stream, peer, local, info })
    }
}

/// The server's certificate chain and key.
fn load_pair(config: &Config) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = load_certs(&config.tls_cert, "TLS certificate")?;
    let key = PrivateKeyDer::from_pem_file(Path::new(&config.tls_key))
        .map_err(|e| bad(format!("cannot load the TLS private key {}: {e}", config.tls_key)))?;
    Ok((chain, key))
}

/// The TLS configuration of the HTTPS management listener (`mgmt_tls`): the AMQPS listener's
/// certificate and key, no client certificates, HTTP/1.1 by ALPN. An error when `mgmt_tls` is
/// on without `tls_cert` and `tls_key`.
pub fn https_config(config: &Config) -> io::Result<Option<Arc<ServerConfig>>> {
    if !config.mgmt_tls {
        return Ok(None);
    }
    if config.tls_cert.is_empty() || config.tls_key.is_empty() {
        return Err(bad("mgmt_tls needs tls_cert and tls_key".into()));
    }
    let (chain, key) = load_pair(config)?;
    #[allow(deprecated)] // ring: see TlsSettings::from_config
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            bad(format!("the TLS certificate {} and key {} do not make a pair: {e}", config.tls_cert, config.tls_key))
        })?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server_config)))
}

/// The user name a client certificate logs in as, per `from`; `None` if it does not parse or
/// has no CN (for [`CertLoginFrom::CommonName`]).
pub fn cert_login_name(der: &[u8], from: CertLoginFrom) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    match from {
        CertLoginFrom::DistinguishedName => Some(rfc2253(subject)),
        // As RabbitMQ does: the CN as it is (no escapes), several joined by ',' in subject order.
        CertLoginFrom::CommonName => {
            let cns: Vec<&str> = subject.iter_common_name().filter_map(|cn| cn.as_str().ok()).collect();
            (!cns.is_empty()).then(|| cns.join(","))
        }
    }
}

/// A name as RabbitMQ writes it for `ssl_cert_login_from = distinguished_name` (RFC 2253, as
/// `openssl x509 -subject -nameopt RFC2253` prints it for the usual attributes): the RDNs last
/// first, joined by `,`; the attributes of a multi-valued RDN by `+`. Where openssl and RabbitMQ
/// differ, RabbitMQ (3.10) wins, since the users exist there already: its attribute names
/// ([`attribute_type`]) and its escapes ([`escape`]).
pub fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| format!("{}={}", attribute_type(attr.attr_type()), attribute_value(attr)))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RabbitMQ's names for attribute types (upper case where openssl writes `emailAddress`, `GN`,
/// `title`, `serialNumber`); any other type, the street address among them, as its dotted OID.
fn attribute_type(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    let short = match oid.to_id_string().as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "TITLE",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATIONQUALIFIER",
        "2.5.4.65" => "PSEUDONYM",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        other => return other.to_string(),
    };
    short.to_string()
}

/// An attribute's value, escaped as RFC 2253 says; one that is not a string is `#` and the
/// hex of its bytes.
fn attribute_value(attr: &x509_parser::x509::AttributeTypeAndValue<'_>) -> String {
    match attr.as_str() {
        Ok(s) => escape(s),
        Err(_) => {
            let raw = attr.attr_value().data;
            let mut out = String::from("#");
            for b in raw {
                out.push_str(&format!("{b:02x}"));
            }
            out
        }
    }
}

/// RFC 2253's escapes (`\` before `,+"\<>;`, a leading `#` or space, a trailing space), and, as
/// RabbitMQ and openssl do, control characters, `~` and everything above it as `\XX` per UTF-8
/// byte (`é` is `\C3\A9`, `~` is `\7E`; openssl leaves `~` alone, RabbitMQ does not).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        if !(' '..'~').contains(&c) {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
            continue;
        }
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An accepted connection after its TLS handshake.
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    info: TlsInfo,
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Transport for TlsConnection {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn tls(&self) -> Option<TlsInfo> {
        Some(self.info.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2253_escapes_specials() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("trail "), "trail\\ ");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("plain"), "plain");
        // As RabbitMQ 3.10 writes them: control characters, '~' and non-ASCII (per UTF-8 byte)
        assert_eq!(escape("tab\tx\\y=z"), "tab\\09x\\\\y=z");
        assert_eq!(escape("#hash ~tilde"), "\\#hash \\7Etilde");
        assert_eq!(escape("José"), "Jos\\C3\\A9");
    }

    #[test]
    fn login_from_parses() {
        assert_eq!(CertLoginFrom::parse("distinguished_name"), Ok(CertLoginFrom::DistinguishedName));
        assert_eq!(CertLoginFrom::parse("common_name"), Ok(CertLoginFrom::CommonName));
        assert!(CertLoginFrom::parse("san").is_err());
    }
}
