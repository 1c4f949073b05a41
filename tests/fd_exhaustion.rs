//! The broker out of file descriptors: a client that connects then waits in the listen backlog
//! (the accept fails with EMFILE), the connections already open keep working, and the waiting
//! client is served as soon as descriptors are free again. The listener's pause between failed
//! accepts and its single log line per run are unit-tested in `src/server/accept.rs`; the
//! pressure test `scripts/pressure/fd-limit.sh` measures them on a real process.
//!
//! This file holds one test on purpose: it lowers the whole process's descriptor limit.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};

use common::raw::Raw;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren::protocol::{Frame, Method, PROTOCOL_HEADER};

/// Restores the soft descriptor limit when the test ends, however it ends.
struct SoftLimit(libc::rlimit);

impl SoftLimit {
    fn lower_to(soft: u64) -> SoftLimit {
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
            let new = libc::rlimit { rlim_cur: soft.min(old.rlim_max), rlim_max: old.rlim_max };
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0);
        }
        SoftLimit(old)
    }
}

impl Drop for SoftLimit {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.0) };
    }
}

/// A TCP socket made now, connected later: connecting takes no new descriptor.
fn unconnected_socket() -> OwnedFd {
    // SAFETY: socket() returns a new descriptor (or -1), which OwnedFd then owns.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn connect(fd: OwnedFd, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use std::os::fd::AsRawFd;
    let std::net::SocketAddr::V4(v4) = addr else { panic!("the test broker listens on IPv4") };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: a blocking connect with a sockaddr_in of the size given. On loopback it completes
    // in the kernel (the backlog) whether or not the broker can accept.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true).unwrap();
    tokio::net::TcpStream::from_std(std).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_keeps_serving_while_out_of_file_descriptors() {
    let broker = common::start().await;
    let (_conn, ch) = broker.channel().await;
    let queue = common::unique("fd-exhaustion");
    ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let waiting = unconnected_socket();

    // Use up every descriptor under a lowered limit.
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = SoftLimit::lower_to(open + 32);
    let mut hog = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => panic!("unexpected error while using up descriptors: {e}"),
        }
    }

    // A client connects and sends its header; the broker cannot accept it yet.
    let mut client = Raw { sock: connect(waiting, broker.addr), buf: Default::default() };
    client.send(PROTOCOL_HEADER).await;

    // The connection already open still works, end to end.
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"still",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + common::WAIT;
    let got = loop {
        if let Some(m) = ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
            break Some(m);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(got.expect("the message, got at the limit").delivery.data, b"still");

    // Descriptors come back: the waiting client is served (its connection.start arrives).
    drop(hog);
    match client.frame().await {
        Some(Frame::Method { method: Method::ConnectionStart(_), .. }) => {}
        other => panic!("expected connection.start once descriptors were free, got {other:?}"),
    }
    drop(limit);
}
