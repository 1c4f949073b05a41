//! A connection's opening: the protocol header, then `connection.start`/`start-ok` (SASL),
//! `tune`/`tune-ok` and `open`/`open-ok`, each refusal with RabbitMQ's text
//! (`broker/errors.rs`). What the client announced and what was negotiated become the
//! connection's [`Session`] and its entry in the broker's connection registry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::warn;

use crate::auth::limits::{Place, MAX_CONNECTIONS};
use crate::auth::sasl::{self, SaslError};
use crate::broker::connections::{ConnectionEntry, ConnectionInfo, ConnectionStats, PROTOCOL};
use crate::broker::{errors, Broker};
use crate::protocol::methods::*;
use crate::protocol::{
    check_protocol_header, constants, AmqpError, FieldTable, FieldValue, Frame, LongStr, Method, ProtocolHeader,
    ShortStr,
};
use crate::server::frames::{ConnError, FrameReader, Read};
use crate::server::outbound::Outbound;
use crate::server::session::{ClientCapabilities, Session};
use crate::server::transport::TlsInfo;

/// How long a client has for the whole handshake (RabbitMQ's `handshake_timeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a connection comes from, known before its handshake.
pub(super) struct Origin {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// When it was accepted (ms since the UNIX epoch).
    pub connected_at: u64,
    pub stats: Arc<ConnectionStats>,
    /// On a TLS connection, what `EXTERNAL` needs; `None` on plain TCP.
    pub tls: Option<TlsInfo>,
}

/// Reads the 8-byte protocol header: true for AMQP 0-9-1 (or a version we accept as it).
pub(super) async fn read_protocol_header(socket: &mut (impl AsyncRead + Unpin)) -> std::io::Result<bool> {
    let mut buf = [0u8; 8];
    let mut have = 0;
    loop {
        match check_protocol_header(&buf[..have]) {
            ProtocolHeader::Incomplete => {}
            ProtocolHeader::Accepted => return Ok(true),
            ProtocolHeader::Refused => return Ok(false),
        }
        let n = socket.read(&mut buf[have..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
}

fn server_properties() -> FieldTable {
    let s = |v: &str| FieldValue::from(v);
    let mut caps = FieldTable::new();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(ShortStr::from_static(cap), FieldValue::Bool(true));
    }
    let mut p = FieldTable::new();
    p.insert(ShortStr::from_static("capabilities"), FieldValue::Table(caps));
    p.insert(ShortStr::from_static("cluster_name"), s("warren"));
    p.insert(ShortStr::from_static("copyright"), s("Copyright (c) the Warren authors"));
    p.insert(ShortStr::from_static("information"), s("Licensed under the Apache License 2.0"));
    p.insert(ShortStr::from_static("platform"), s(concat!("Rust ", env!("CARGO_PKG_RUST_VERSION"))));
    p.insert(ShortStr::from_static("product"), s("Warren"));
    p.insert(ShortStr::from_static("version"), s(env!("CARGO_PKG_VERSION")));
    p
}

async fn expect_method(reader: &mut FrameReader, what: &'static str) -> Result<Method, ConnError> {
    loop {
        match reader.next().await? {
            Read::Eof => return Err(ConnError::Gone("client closed the socket during the handshake")),
            Read::Frame(Frame::Heartbeat) => continue,
            Read::Frame(Frame::Method { channel: 0, method }) => return Ok(method),
            Read::Frame(_) => return Err(errors::expected_on_channel_zero(what).into()),
        }
    }
}

fn client_capabilities(props: &FieldTable) -> ClientCapabilities {
    let caps = match props.get("capabilities") {
        Some(FieldValue::Table(t)) => t.clone(),
        _ => FieldTable::new(),
    };
    let on = |k: &str| matches!(caps.get(k), Some(FieldValue::Bool(true)));
    ClientCapabilities {
        consumer_cancel_notify: on("consumer_cancel_notify"),
        authentication_failure_close: on("authentication_failure_close"),
        publisher_confirms: on("publisher_confirms"),
        connection_blocked: on("connection.blocked"),
    }
}

/// Splits a SASL response into user and password, or the error that closes the connection.
fn credentials(mechanism: &ShortStr, response: &LongStr) -> Result<(String, String), AmqpError> {
    sasl::credentials(mechanism.as_bytes(), response.as_bytes()).map_err(|e| match e {
        SaslError::Malformed(why) => errors::sasl_malformed(why),
        SaslError::UnknownMechanism(name) => errors::unknown_mechanism(name),
    })
}

/// SASL `EXTERNAL` on a TLS connection: the user named by the verified client certificate, which
/// must exist (no password). The user name (or what stands for it in the log) and, when the
/// login is refused, why (RabbitMQ's reasons).
fn external_login(broker: &Broker, tls: &TlsInfo, peer: SocketAddr) -> (String, Option<String>) {
    if !tls.verify_peer {
        return (String::new(), Some("TLS configuration is unsafe (tls_verify_peer is off)".into()));
    }
    let Some(name) = &tls.cert_login else {
        return (String::new(), Some("connection peer presented no TLS (x.509) certificate".into()));
    };
    let refused = broker.users.authenticate_external(name, peer.ip()).err().map(|why| match why {
        crate::auth::LoginRefused::BadCredentials => {
            format!("user '{name}' (from the client certificate) does not exist")
        }
        other => format!("{other:?}"),
    });
    (name.clone(), refused)
}

/// Runs `connection.start` to `connection.open-ok`.
pub(super) async fn handshake(
    broker: &Arc<Broker>,
    reader: &mut FrameReader,
    outbound: &Arc<Outbound>,
    origin: &Origin,
) -> Result<(Session, Admission), ConnError> {
    let peer = origin.peer;
    outbound.send_method(
        0,
        &Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongStr::from(if origin.tls.is_some() { sasl::TLS_MECHANISMS } else { sasl::MECHANISMS }),
            locales: LongStr::from("en_US"),
        }),
    );
    let Method::ConnectionStartOk(start_ok) = expect_method(reader, "connection.start-ok").await? else {
        return Err(errors::expected_method("connection.start-ok").into());
    };
    let capabilities = client_capabilities(&start_ok.client_properties);
    let mechanism = start_ok.mechanism.to_string_lossy();
    let login = match &origin.tls {
        Some(tls) if start_ok.mechanism.as_bytes() == b"EXTERNAL" => external_login(broker, tls, peer),
        _ => {
            let (user, password) = credentials(&start_ok.mechanism, &start_ok.response)?;
            let refused = broker.users.authenticate(&user, &password, peer.ip()).err().map(|why| format!("{why:?}"));
            (user, refused)
        }
    };
    let user = match login {
        (user, None) => user,
        (user, Some(why)) => {
            warn!(%peer, %user, mechanism = %start_ok.mechanism, reason = %why, "login refused");
            if !capabilities.authentication_failure_close {
                return Err(ConnError::Gone("login refused (client cannot take connection.close for it)"));
            }
            return Err(errors::login_refused(&start_ok.mechanism).into());
        }
    };

    let limits = &broker.limits;
    outbound.send_method(
        0,
        &Method::ConnectionTune(ConnectionTune {
            channel_max: limits.channel_max,
            frame_max: limits.frame_max,
            heartbeat: limits.heartbeat,
        }),
    );
    let Method::ConnectionTuneOk(tune) = expect_method(reader, "connection.tune-ok").await? else {
        return Err(errors::expected_method("connection.tune-ok").into());
    };
    if tune.frame_max != 0 && tune.frame_max < constants::FRAME_MIN_SIZE {
        return Err(errors::frame_max_too_small(tune.frame_max, constants::FRAME_MIN_SIZE).into());
    }
    if tune.frame_max > limits.frame_max {
        return Err(errors::frame_max_too_large(tune.frame_max, limits.frame_max).into());
    }
    if tune.channel_max > limits.channel_max {
        return Err(errors::channel_max_too_large(tune.channel_max, limits.channel_max).into());
    }
    let frame_max = if tune.frame_max == 0 { limits.frame_max } else { tune.frame_max };
    let channel_max = if tune.channel_max == 0 { limits.channel_max } else { tune.channel_max };
    reader.frame_max = frame_max;

    let Method::ConnectionOpen(open) = expect_method(reader, "connection.open").await? else {
        return Err(errors::expected_method("connection.open").into());
    };
    let Some(vhost) = broker.vhost(&open.virtual_host) else {
        return Err(errors::vhost_not_found(&open.virtual_host).into());
    };
    // RabbitMQ's order: the vhost's connection limit, the user's, then the user's access.
    let in_vhost = vhost.connections.take(vhost.limit(MAX_CONNECTIONS)).map_err(|limit| {
        warn!(%peer, %user, vhost = %vhost.name, limit, "connection refused: vhost connection limit reached");
        errors::vhost_connection_limit(&vhost.name, &user, limit)
    })?;
    let tallies = broker.connections().user_tallies(&user);
    let user_limit = broker.users.get(&user).and_then(|u| u.limits.limit(MAX_CONNECTIONS));
    let of_user = tallies.connections.take(user_limit).map_err(|limit| {
        warn!(%peer, %user, limit, "connection refused: user connection limit reached");
        errors::user_connection_limit(&user, limit)
    })?;
    // Any permission entry, even '' '' '', lets a user open a vhost (RabbitMQ's rule).
    let Some(permission) = broker.permissions.get(&user, &vhost.name) else {
        warn!(%peer, %user, vhost = %vhost.name, "vhost access refused: no permissions there");
        return Err(errors::vhost_access_refused(&vhost.name, &user).into());
    };
    let topics = broker.topic_permissions.of_user_in(&user, &vhost.name);
    let access = broker.access_cache.get(&permission, topics);
    outbound.send_method(0, &Method::ConnectionOpenOk(ConnectionOpenOk {}));
    let id = broker.next_connection_id();
    let info = ConnectionInfo {
        id,
        name: ConnectionInfo::name_for(peer, origin.local),
        peer,
        local: origin.local,
        user: user.clone(),
        vhost: vhost.name.clone(),
        // Kept for the management API as long as the connection lives: detached, so that
        // it does not keep the read buffer it was decoded from (see `buffers.rs`).
        client_properties: start_ok.client_properties.detached(),
        connected_at: origin.connected_at,
        frame_max,
        channel_max,
        heartbeat: tune.heartbeat,
        protocol: PROTOCOL,
        auth_mechanism: mechanism,
        ssl: origin.tls.is_some(),
    };
    let session = Session {
        id,
        broker: broker.clone(),
        vhost,
        user,
        access,
        outbound: outbound.clone(),
        frame_max,
        channel_max,
        heartbeat: tune.heartbeat,
        capabilities,
        registry: ConnectionEntry::new(info, origin.stats.clone()),
        user_tallies: tallies,
    };
    Ok((session, Admission { _places: [in_vhost, of_user] }))
}

/// A connection's places in its vhost's and its user's connection counts, held until the
/// connection's task ends.
pub(super) struct Admission {
    _places: [Place; 2],
}
