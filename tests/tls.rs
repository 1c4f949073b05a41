//! AMQPS: the TLS listener beside the plain one, client certificates (verify_peer,
//! fail_if_no_peer_cert) and SASL EXTERNAL, with certificates made by rcgen in each test (none
//! committed) and a raw AMQP client over tokio-rustls.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use warren::auth::{Permission, User};
use warren::config::Config;
use warren::protocol::methods::*;
use warren::protocol::{decode_frame, encode_method, FieldTable, FieldValue, Frame, LongStr, Method, ShortStr};

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate
/// `C=XX, O=Acme, CN=app`, written as PEM files into `dir`.
struct Pki {
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
    cert: String,
    key: String,
    ca_file: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki(dir: &Path) -> Pki {
    let ca = ca("Warren test CA");
    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &ca).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    // (rcgen starts with a CN of its own, first: the subject is written in push order.)
    client.distinguished_name = DistinguishedName::new();
    client.distinguished_name.push(DnType::CountryName, "XX");
    client.distinguished_name.push(DnType::OrganizationName, "Acme");
    client.distinguished_name.push(DnType::CommonName, "app");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &ca).unwrap();

    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    Pki {
        ca: ca.der().clone(),
        client_chain: vec![client_cert.der().clone()],
        client_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_key.serialize_der())),
        cert: write("server.pem", server_cert.pem()),
        key: write("server.key", server_key.serialize_pem()),
        ca_file: write("ca.pem", ca.pem()),
    }
}

fn tls_config(c: &mut Config, pki: &Pki) {
    c.tls_port = 0;
    c.tls_cert = pki.cert.clone();
    c.tls_key = pki.key.clone();
}

#[allow(deprecated)] // ring has no post-quantum key exchange; fine for tests
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client trusting `ca`, presenting the client certificate when `with_cert`.
fn connector(ca: &CertificateDer<'static>, client: Option<&Pki>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder =
        rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
    let builder = builder.with_root_certificates(roots);
    let config = match client {
        Some(p) => builder.with_client_auth_cert(p.client_chain.clone(), p.client_key.clone_key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// A raw AMQP 0-9-1 client over any stream.
struct Raw<S> {
    sock: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    fn new(sock: S) -> Raw<S> {
        Raw { sock, buf: BytesMut::new() }
    }

    async fn send_method(&mut self, channel: u16, m: Method) {
        let mut b = BytesMut::new();
        encode_method(&mut b, channel, &m);
        self.sock.write_all(&b).await.unwrap();
    }

    /// The next frame, or `None` once the server closed the stream (or it failed).
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, 0).unwrap() {
                return Some(f);
            }
            match tokio::time::timeout(common::WAIT, self.sock.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return None,
                Err(_) => panic!("no frame within {:?}", common::WAIT),
            }
        }
    }

    async fn method(&mut self) -> Option<Method> {
        loop {
            match self.frame().await? {
                Frame::Method { method, .. } => return Some(method),
                _ => continue,
            }
        }
    }

    /// Header, start, start-ok with `mechanism`; returns the offered mechanisms and what came
    /// after start-ok (tune, or close).
    async fn login(&mut self, mechanism: &'static str, response: &str) -> (String, Option<Method>) {
        self.sock.write_all(warren::protocol::PROTOCOL_HEADER).await.unwrap();
        let Some(Method::ConnectionStart(start)) = self.method().await else { panic!("expected connection.start") };
        let mut caps = FieldTable::new();
        caps.insert(ShortStr::from_static("authentication_failure_close"), FieldValue::Bool(true));
        let mut props = FieldTable::new();
        props.insert(ShortStr::from_static("capabilities"), FieldValue::Table(caps));
        let start_ok = ConnectionStartOk {
            client_properties: props,
            mechanism: ShortStr::from_static(mechanism),
            response: LongStr::from(response),
            locale: ShortStr::from_static("en_US"),
        };
        self.send_method(0, Method::ConnectionStartOk(start_ok)).await;
        (String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned(), self.method().await)
    }

    /// Tune-ok and open `/`; the server's answer.
    async fn open(&mut self, tune: &ConnectionTune) -> Option<Method> {
        let tune_ok = ConnectionTuneOk { channel_max: tune.channel_max, frame_max: tune.frame_max, heartbeat: 0 };
        self.send_method(0, Method::ConnectionTuneOk(tune_ok)).await;
        self.send_method(0, Method::ConnectionOpen(ConnectionOpen { virtual_host: ShortStr::from_static("/") })).await;
        self.method().await
    }
}

/// Logs in and opens `/`, expecting success.
async fn open_as<S: AsyncRead + AsyncWrite + Unpin>(r: &mut Raw<S>, mechanism: &'static str, response: &str) {
    let (_, next) = r.login(mechanism, response).await;
    let Some(Method::ConnectionTune(tune)) = next else { panic!("expected tune, got {next:?}") };
    assert!(matches!(r.open(&tune).await, Some(Method::ConnectionOpenOk(_))));
}

fn refused_with(m: Option<Method>, text: &str) {
    let Some(Method::ConnectionClose(close)) = m else { panic!("expected connection.close, got {m:?}") };
    assert_eq!(close.reply_code, 403);
    assert_eq!(String::from_utf8_lossy(close.reply_text.as_bytes()), text);
}

#[tokio::test]
async fn plain_login_over_tls_publishes_and_gets_while_the_plain_port_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let b = common::start_configured(|c| tls_config(c, &pki)).await;
    let tls_addr = b.tls_addr.expect("the AMQPS listener runs");
    assert_ne!(tls_addr, b.addr);

    let mut r = Raw::new(tls_connect(tls_addr, &connector(&pki.ca, None)).await.expect("TLS handshake"));
    let (mechanisms, next) = r.login("PLAIN", "\0guest\0guest").await;
    assert_eq!(mechanisms, "PLAIN AMQPLAIN EXTERNAL");
    let Some(Method::ConnectionTune(tune)) = next else { panic!("expected tune, got {next:?}") };
    assert!(matches!(r.open(&tune).await, Some(Method::ConnectionOpenOk(_))));
    let listed = b.broker.connections().list();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].info.ssl);

    let queue = ShortStr::from_static("over-tls");
    r.send_method(1, Method::ChannelOpen(ChannelOpen {})).await;
    assert!(matches!(r.method().await, Some(Method::ChannelOpenOk(_))));
    r.send_method(1, Method::QueueDeclare(QueueDeclare { queue: queue.clone(), ..Default::default() })).await;
    assert!(matches!(r.method().await, Some(Method::QueueDeclareOk(_))));
    let publish = Method::BasicPublish(BasicPublish { routing_key: queue.clone(), ..Default::default() });
    let mut frames = BytesMut::new();
    let body = vec![42u8; 200_000];
    warren::protocol::encode_content(&mut frames, 1, &publish, &Default::default(), &body, tune.frame_max);
    r.sock.write_all(&frames).await.unwrap();
    r.send_method(1, Method::BasicGet(BasicGet { queue: queue.clone(), no_ack: true })).await;
    assert!(matches!(r.method().await, Some(Method::BasicGetOk(_))));
    let mut got = Vec::new();
    while got.len() < body.len() {
        match r.frame().await {
            Some(Frame::Body { payload, .. }) => got.extend_from_slice(&payload),
            Some(Frame::Header { .. }) => {}
            other => panic!("expected the message, got {other:?}"),
        }
    }
    assert_eq!(got, body);

    // The plain listener serves beside it; it has no EXTERNAL.
    let mut plain = Raw::new(TcpStream::connect(b.addr).await.unwrap());
    let (mechanisms, next) = plain.login("PLAIN", "\0guest\0guest").await;
    assert_eq!(mechanisms, "PLAIN AMQPLAIN");
    assert!(matches!(next, Some(Method::ConnectionTune(_))));
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let b = common::start_configured(|c| tls_config(c, &pki)).await;
    let other = ca("Someone else's CA");
    let Err(e) = tls_connect(b.tls_addr.unwrap(), &connector(other.der(), None)).await else { panic!("accepted") };
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[tokio::test]
async fn plain_amqp_to_the_tls_port_and_tls_to_the_plain_port_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let b = common::start_configured(|c| tls_config(c, &pki)).await;
    let mut sock = TcpStream::connect(b.tls_addr.unwrap()).await.unwrap();
    sock.write_all(warren::protocol::PROTOCOL_HEADER).await.unwrap();
    let mut got = Vec::new();
    // A TLS alert at most, then end of stream.
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut got)).await.expect("closed").ok();
    assert!(got.len() < 16, "{got:?}");

    // TLS to the plain port: the server answers with AMQP's header and closes.
    assert!(tls_connect(b.addr, &connector(&pki.ca, None)).await.is_err(), "no TLS there");
    // Both listeners still serve.
    let mut r = Raw::new(tls_connect(b.tls_addr.unwrap(), &connector(&pki.ca, None)).await.unwrap());
    open_as(&mut r, "PLAIN", "\0guest\0guest").await;
}

#[tokio::test]
async fn fail_if_no_peer_cert_refuses_a_client_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let b = common::start_configured(|c| {
        tls_config(c, &pki);
        c.tls_ca = pki.ca_file.clone();
        c.tls_verify_peer = true;
        c.tls_fail_if_no_peer_cert = true;
    })
    .await;
    let addr = b.tls_addr.unwrap();
    // TLS 1.3: the client's handshake may complete before the server refuses; nothing AMQP
    // comes back either way.
    if let Ok(stream) = tls_connect(addr, &connector(&pki.ca, None)).await {
        let mut r = Raw::new(stream);
        let _ = r.sock.write_all(warren::protocol::PROTOCOL_HEADER).await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(common::WAIT, r.sock.read(&mut buf)).await.expect("closed");
        assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
    }
    // With the certificate: PLAIN works.
    let mut r = Raw::new(tls_connect(addr, &connector(&pki.ca, Some(&pki))).await.unwrap());
    open_as(&mut r, "PLAIN", "\0guest\0guest").await;
}

fn add_user(b: &common::TestBroker, name: &str) {
    b.broker.put_user(User::with_password(name, "unused", vec![])).unwrap();
    let p = Permission {
        user: name.to_string(),
        vhost: ShortStr::from_static("/"),
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    };
    b.broker.set_permission(p).unwrap();
}

const EXTERNAL_REFUSED: &str =
    "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.";

#[tokio::test]
async fn external_logs_in_as_the_certificate_subject() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let b = common::start_configured(|c| {
        tls_config(c, &pki);
        c.tls_ca = pki.ca_file.clone();
        c.tls_verify_peer = true;
    })
    .await;
    let addr = b.tls_addr.unwrap();
    let with_cert = connector(&pki.ca, Some(&pki));

    // No such user yet: refused.
    let mut r = Raw::new(tls_connect(addr, &with_cert).await.unwrap());
    let (_, next) = r.login("EXTERNAL", "").await;
    refused_with(next, EXTERNAL_REFUSED);

    use warren::server::tls::{cert_login_name, CertLoginFrom};
    let dn = cert_login_name(&pki.client_chain[0], CertLoginFrom::DistinguishedName);
    assert_eq!(dn.as_deref(), Some("CN=app,O=Acme,C=XX"));
    add_user(&b, "CN=app,O=Acme,C=XX");
    let mut r = Raw::new(tls_connect(addr, &with_cert).await.unwrap());
    open_as(&mut r, "EXTERNAL", "").await;
    let listed = b.broker.connections().list();
    assert_eq!(listed[0].info.user, "CN=app,O=Acme,C=XX");
    assert_eq!(listed[0].info.auth_mechanism, "EXTERNAL");

    // Without a certificate (verification optional here): refused, PLAIN still fine.
    let mut r = Raw::new(tls_connect(addr, &connector(&pki.ca, None)).await.unwrap());
    let (_, next) = r.login("EXTERNAL", "").await;
    refused_with(next, EXTERNAL_REFUSED);
    let mut r = Raw::new(tls_connect(addr, &connector(&pki.ca, None)).await.unwrap());
    open_as(&mut r, "PLAIN", "\0guest\0guest").await;

    // EXTERNAL on the plain port: not offered there.
    let mut plain = Raw::new(TcpStream::connect(b.addr).await.unwrap());
    let (_, next) = plain.login("EXTERNAL", "").await;
    let Some(Method::ConnectionClose(close)) = next else { panic!("expected close, got {next:?}") };
    assert_eq!(close.reply_code, 503); // unknown mechanism, as any other not offered
}

#[tokio::test]
async fn external_with_common_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let b = common::start_configured(|c| {
        tls_config(c, &pki);
        c.tls_ca = pki.ca_file.clone();
        c.tls_verify_peer = true;
        c.tls_cert_login_from = "common_name".into();
    })
    .await;
    add_user(&b, "app");
    let mut r = Raw::new(tls_connect(b.tls_addr.unwrap(), &connector(&pki.ca, Some(&pki))).await.unwrap());
    open_as(&mut r, "EXTERNAL", "").await;
    assert_eq!(b.broker.connections().list()[0].info.user, "app");
}

#[tokio::test]
async fn bad_files_stop_start_up_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let data = tempfile::tempdir().unwrap();
    let base = Config {
        bind: "127.0.0.1".into(),
        port: 0,
        tls_port: 0,
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    };
    let missing = Config { tls_cert: "/no/such/cert.pem".into(), tls_key: pki.key.clone(), ..base.clone() };
    let e = warren::server::Listener::bind(&missing).await.err().expect("refused");
    assert!(e.to_string().contains("/no/such/cert.pem"), "{e}");
    // A key that is not the certificate's.
    let mismatched = Config { tls_cert: pki.cert.clone(), tls_key: pki.ca_file.clone(), ..base.clone() };
    let e = warren::server::Listener::bind(&mismatched).await.err().expect("refused");
    assert!(e.to_string().contains("private key"), "{e}");
    let no_ca = Config { tls_cert: pki.cert.clone(), tls_key: pki.key.clone(), tls_verify_peer: true, ..base.clone() };
    let e = warren::server::Listener::bind(&no_ca).await.err().expect("refused");
    assert!(e.to_string().contains("tls_ca"), "{e}");
    let nothing = Config { plain_listener: false, ..base.clone() };
    assert!(warren::server::Listener::bind(&nothing).await.is_err());
    // TLS only.
    let tls_only = Config { plain_listener: false, tls_cert: pki.cert.clone(), tls_key: pki.key.clone(), ..base };
    let l = warren::server::Listener::bind(&tls_only).await.expect("binds");
    assert!(l.plain_addr().is_none());
    assert_eq!(l.tls_addr(), Some(l.local_addr().unwrap()));
}

#[tokio::test]
async fn the_management_api_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let b = common::start_configured(|c| tls_config(c, &pki)).await;
    let mut c = Config { tls_cert: pki.cert.clone(), tls_key: pki.key.clone(), ..Config::default() };
    assert!(warren::server::tls::https_config(&c).unwrap().is_none(), "off unless asked");
    c.mgmt_tls = true;
    let https = warren::server::tls::https_config(&c).unwrap().map(|tls| (0, tls));
    let amqp = vec![warren::mgmt::ListenerInfo { protocol: "amqp", addr: b.addr }];
    let mgmt = warren::mgmt::MgmtListener::bind_for(b.broker.clone(), "127.0.0.1", 0, amqp, https).await.unwrap();
    let addr = mgmt.https_addr().expect("the HTTPS listener runs");
    let _served = tokio::spawn(mgmt.run());

    let mut s = tls_connect(addr, &connector(&pki.ca, None)).await.expect("TLS handshake");
    let auth = "Z3Vlc3Q6Z3Vlc3Q="; // guest:guest
    let request = format!(
        "GET /api/overview HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(common::WAIT, s.read_to_end(&mut reply)).await.expect("a reply");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"https\""), "{reply}");

    let no_files = Config { mgmt_tls: true, ..Config::default() };
    assert!(warren::server::tls::https_config(&no_files).is_err());
}

#[tokio::test]
async fn external_is_refused_when_peers_are_not_verified() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    // No tls_verify_peer: no client certificate is asked for, and EXTERNAL is refused
    // ("TLS configuration is unsafe" in the log), though offered.
    let b = common::start_configured(|c| tls_config(c, &pki)).await;
    add_user(&b, "CN=app,O=Acme,C=XX");
    let mut r = Raw::new(tls_connect(b.tls_addr.unwrap(), &connector(&pki.ca, Some(&pki))).await.unwrap());
    let (mechanisms, next) = r.login("EXTERNAL", "").await;
    assert!(mechanisms.contains("EXTERNAL"));
    refused_with(next, EXTERNAL_REFUSED);
}

/// A client certificate with `subject` (pushed in order: the last is the first RDN written; rcgen
/// keeps one attribute per type).
fn cert_with_subject(subject: &[(DnType, &str)]) -> CertificateDer<'static> {
    let issuer = ca("Warren test CA");
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    for (t, v) in subject {
        params.distinguished_name.push(t.clone(), *v);
    }
    params.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap().der().clone()
}

#[test]
fn the_login_name_is_written_as_rabbitmq_writes_it() {
    use warren::server::tls::{cert_login_name, CertLoginFrom};
    let oid = |arcs: &[u64]| DnType::CustomDnType(arcs.to_vec());
    // What RabbitMQ 3.10.8 answered for the same subjects (its "EXTERNAL login refused: user
    // '...'" log line, and a user of that name then logging in): its names for attribute types
    // where openssl's differ (EMAILADDRESS, GIVENNAME, TITLE, SERIALNUMBER, ...; the street
    // address as its OID), and control characters, '~' and non-ASCII (per UTF-8 byte) as \XX.
    let cert = cert_with_subject(&[
        (DnType::CountryName, "XX"),
        (DnType::StateOrProvinceName, "Some State"),
        (DnType::OrganizationName, "Acme, Inc."),
        (DnType::OrganizationalUnitName, "a+b"),
        (DnType::CommonName, "José <x>; \"q\""),
        (oid(&[1, 2, 840, 113549, 1, 9, 1]), "app@example.com"),
    ]);
    assert_eq!(
        cert_login_name(&cert, CertLoginFrom::DistinguishedName).as_deref(),
        Some(r#"EMAILADDRESS=app@example.com,CN=Jos\C3\A9 \<x\>\; \"q\",OU=a\+b,O=Acme\, Inc.,ST=Some State,C=XX"#)
    );
    let cert = cert_with_subject(&[
        (oid(&[0, 9, 2342, 19200300, 100, 1, 25]), "example"),
        (oid(&[0, 9, 2342, 19200300, 100, 1, 1]), "u1"),
        (oid(&[2, 5, 4, 9]), "Main St"),
        (DnType::LocalityName, "Town"),
        (oid(&[2, 5, 4, 12]), "Dr"),
        (oid(&[2, 5, 4, 5]), "42"),
        (oid(&[2, 5, 4, 42]), "Jo"),
        (oid(&[2, 5, 4, 4]), "Do"),
        (oid(&[2, 5, 4, 43]), "JD"),
        (oid(&[2, 5, 4, 65]), "ps"),
        (DnType::CommonName, "#hash ~tilde"),
    ]);
    assert_eq!(
        cert_login_name(&cert, CertLoginFrom::DistinguishedName).as_deref(),
        Some(
            r"CN=\#hash \7Etilde,PSEUDONYM=ps,INITIALS=JD,SN=Do,GIVENNAME=Jo,SERIALNUMBER=42,TITLE=Dr,L=Town,2.5.4.9=Main St,UID=u1,DC=example"
        )
    );
    let cert = cert_with_subject(&[(oid(&[2, 5, 4, 44]), "III"), (DnType::CommonName, "tab\tx\\y=z")]);
    assert_eq!(
        cert_login_name(&cert, CertLoginFrom::DistinguishedName).as_deref(),
        Some(r"CN=tab\09x\\y=z,GENERATIONQUALIFIER=III")
    );
    // common_name: the CN as it is, unescaped. (Several CNs are joined by ',', as RabbitMQ does;
    // rcgen keeps one attribute per type, so that is not made here.)
    let cert = cert_with_subject(&[(DnType::OrganizationName, "Acme"), (DnType::CommonName, "José a,b ~")]);
    assert_eq!(cert_login_name(&cert, CertLoginFrom::CommonName).as_deref(), Some("José a,b ~"));
}
