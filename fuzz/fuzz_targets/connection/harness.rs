//! One broker for the whole fuzzing process: a tokio runtime and a Warren on a free port of
//! 127.0.0.1 with a data directory of its own, started at the first input and reused by every
//! run after it (each run opens new connections and cleans up after itself).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tokio::runtime::Runtime;
use warren::broker::Broker;
use warren::config::Config;
use warren::server::Listener;

pub struct Harness {
    pub rt: Runtime,
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The broker, started on first use.
pub fn get() -> &'static Harness {
    HARNESS.get_or_init(start)
}

fn start() -> Harness {
    let data = data_dir();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let config = Config {
        bind: "127.0.0.1".into(),
        port: 0,
        data_dir: data.clone(),
        log_level: "warn".into(),
        // No disk alarm may block the publishers mid-run: a CI machine's disk can be nearly full.
        disk_free_limit: 0,
        ..Config::default()
    };
    let (addr, broker) = rt.block_on(async {
        let listener = Listener::bind(&config).await.expect("start the broker");
        let addr = listener.local_addr().expect("the broker's address");
        let broker = listener.broker().clone();
        tokio::spawn(listener.run());
        (addr, broker)
    });
    eprintln!("warren-fuzz: broker on {addr}, data in {}", data.display());
    Harness { rt, addr, broker }
}

/// `broker-<pid>` under `$WARREN_FUZZ_DATA` (scripts/fuzz.sh points it at a directory it
/// removes afterwards) or `$TMPDIR/warren-fuzz`. libFuzzer ends the process with `exit`, which
/// drops no static, so the directories of earlier runs whose process is gone are removed here.
fn data_dir() -> PathBuf {
    let parent = std::env::var_os("WARREN_FUZZ_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("warren-fuzz"));
    std::fs::create_dir_all(&parent).expect("create the fuzz data directory");
    remove_stale(&parent);
    let dir = parent.join(format!("broker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the broker's data directory");
    dir
}

fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("broker-")) else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
