//! Settings, layered: built-in defaults < config file (`warren.toml`) < `WARREN_*` environment
//! variables < command-line flags. Scripts, containers and tests rely on these names; keep them
//! stable.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Every setting the broker reads. Field names are the config-file keys; the environment
/// variable is `WARREN_` + the name in capitals (`WARREN_DATA_DIR`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Config {
    /// Address the AMQP listener binds to.
    pub bind: String,
    /// AMQP port; 0 picks a free one (tests use that).
    pub port: u16,
    /// Address the management HTTP API listens on.
    pub mgmt_bind: String,
    /// Management HTTP API port (RabbitMQ's 15672); 0 picks a free one.
    pub mgmt_port: u16,
    /// Address the Prometheus metrics endpoint listens on.
    pub prometheus_bind: String,
    /// Prometheus metrics port (RabbitMQ's `rabbitmq_prometheus`, 15692); 0 picks a free one.
    pub prometheus_port: u16,
    /// Where RocksDB keeps definitions and messages.
    pub data_dir: PathBuf,
    /// A definitions file (RabbitMQ's format) imported at start-up, as RabbitMQ's
    /// `load_definitions`; empty for none.
    pub load_definitions: String,
    /// A `tracing` filter: `info`, `warren=debug`, ... (`RUST_LOG` wins when set).
    pub log_level: String,
    /// Largest message body accepted, in octets (RabbitMQ's `max_message_size`).
    pub max_message_size: u64,
    /// Persistent message bodies each durable queue keeps in memory; a longer backlog stays on
    /// disk and is read back as consumers reach it.
    pub queue_memory_window: usize,
    /// Bytes of transient messages all queues together keep in memory; beyond it new ones are
    /// paged out to disk and read back as consumers reach them.
    pub transient_memory_limit: u64,
    /// Free disk space (bytes) under the data directory below which publishing connections are
    /// blocked until space returns (RabbitMQ's `disk_free_limit`, also 50 MB by default).
    pub disk_free_limit: u64,
    /// Resident memory above which publishing connections are blocked (RabbitMQ's
    /// `vm_memory_high_watermark`): a fraction of the available memory (RAM, or the cgroup's
    /// limit), `0.6` by default, or an absolute size (`512MiB`, `2GB`, bytes).
    pub memory_high_watermark: String,
    /// The user a first start creates (administrator, full permissions on `default_vhost`).
    /// `RABBITMQ_DEFAULT_USER`, which docker-compose files for RabbitMQ set, is read too.
    pub default_user: String,
    /// Its password (`RABBITMQ_DEFAULT_PASS` too). Never logged.
    pub default_pass: String,
    /// The vhost a first start creates (`RABBITMQ_DEFAULT_VHOST` too).
    pub default_vhost: String,
    /// Users who may connect only from loopback, comma-separated; `none` for nobody
    /// (RabbitMQ's `loopback_users`).
    pub loopback_users: String,
    /// Milliseconds a delivery may stay unacked before its channel is closed with 406 and the
    /// message requeued (RabbitMQ's `consumer_timeout`, 30 minutes by default; 0 = never).
    pub consumer_timeout: u64,
    /// Whether the plain AMQP listener (`bind`:`port`) runs; off for a TLS-only broker
    /// (`--no-plain`, `plain_listener = false`).
    pub plain_listener: bool,
    /// The AMQPS port (RabbitMQ's `listeners.ssl.default`, 5671); the listener runs only when
    /// `tls_cert` and `tls_key` are set. 0 picks a free one.
    pub tls_port: u16,
    /// Address the AMQPS listener binds to; empty for the same as `bind`.
    pub tls_bind: String,
    /// The server's certificate chain (PEM); empty for no TLS.
    pub tls_cert: String,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: String,
    /// CA certificates (PEM) client certificates are verified against.
    pub tls_ca: String,
    /// Ask for client certificates and verify them (RabbitMQ's `verify_peer`; needs `tls_ca`).
    pub tls_verify_peer: bool,
    /// With `tls_verify_peer`, refuse clients that send no certificate (RabbitMQ's
    /// `fail_if_no_peer_cert`).
    pub tls_fail_if_no_peer_cert: bool,
    /// Where SASL `EXTERNAL` takes the user name from: `distinguished_name` (the subject as an
    /// RFC 2253 string) or `common_name` (RabbitMQ's `ssl_cert_login_from`).
    pub tls_cert_login_from: String,
    /// Also serve the management API over HTTPS (on `mgmt_bind`:`mgmt_tls_port`), with
    /// `tls_cert` and `tls_key` (RabbitMQ's `management.ssl`).
    pub mgmt_tls: bool,
    /// The HTTPS management port (RabbitMQ's `management.ssl.port`, 15671); 0 picks a free one.
    pub mgmt_tls_port: u16,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: "0.0.0.0".to_string(),
            port: 5672,
            mgmt_bind: "0.0.0.0".to_string(),
            mgmt_port: 15672,
            prometheus_bind: "0.0.0.0".to_string(),
            prometheus_port: 15692,
            data_dir: PathBuf::from("./data"),
            load_definitions: String::new(),
            log_level: "info".to_string(),
            max_message_size: 16 * 1024 * 1024,
            queue_memory_window: 8192,
            transient_memory_limit: crate::broker::DEFAULT_TRANSIENT_MEMORY_LIMIT,
            disk_free_limit: 50_000_000,
            memory_high_watermark: "0.6".to_string(),
            consumer_timeout: 30 * 60 * 1000,
            default_user: "guest".to_string(),
            default_pass: "guest".to_string(),
            default_vhost: "/".to_string(),
            loopback_users: "guest".to_string(),
            plain_listener: true,
            tls_port: 5671,
            tls_bind: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_ca: String::new(),
            tls_verify_peer: false,
            tls_fail_if_no_peer_cert: false,
            tls_cert_login_from: "distinguished_name".to_string(),
            mgmt_tls: false,
            mgmt_tls_port: 15671,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<String>,
    pub port: Option<u16>,
    pub mgmt_bind: Option<String>,
    pub mgmt_port: Option<u16>,
    pub prometheus_bind: Option<String>,
    pub prometheus_port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub load_definitions: Option<PathBuf>,
    pub log_level: Option<String>,
    pub max_message_size: Option<u64>,
    pub memory_high_watermark: Option<String>,
    pub plain_listener: Option<bool>,
    pub tls_port: Option<u16>,
    pub tls_bind: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_verify_peer: Option<bool>,
    pub tls_fail_if_no_peer_cert: Option<bool>,
    pub tls_cert_login_from: Option<String>,
    pub mgmt_tls: Option<bool>,
    pub mgmt_tls_port: Option<u16>,
}

pub const DEFAULT_CONFIG_FILE: &str = "warren.toml";
pub const ENV_PREFIX: &str = "WARREN";

/// RabbitMQ's environment variables Warren honours, and the setting each feeds.
const RABBITMQ_ENV: [(&str, &str); 3] = [
    ("RABBITMQ_DEFAULT_USER", "default_user"),
    ("RABBITMQ_DEFAULT_PASS", "default_pass"),
    ("RABBITMQ_DEFAULT_VHOST", "default_vhost"),
];

impl Config {
    /// `memory_high_watermark`, parsed.
    pub fn memory_watermark(&self) -> Result<crate::broker::vm_memory::Watermark, String> {
        crate::broker::vm_memory::Watermark::parse(&self.memory_high_watermark)
    }

    /// `loopback_users` as a list (`none`: empty).
    pub fn loopback_user_list(&self) -> Vec<String> {
        if self.loopback_users.trim() == "none" {
            return Vec::new();
        }
        self.loopback_users.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect()
    }
}

impl Config {
    /// Builds the layered configuration. `file` is an explicit config path (must exist); without
    /// one, `./warren.toml` is read if present. `env` is the environment to read (the process
    /// environment in production, a fixed map in tests).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config, config::ConfigError> {
        let d = Config::default();
        let mut b = config::Config::builder()
            .set_default("bind", d.bind)?
            .set_default("port", d.port)?
            .set_default("mgmt_bind", d.mgmt_bind)?
            .set_default("mgmt_port", d.mgmt_port)?
            .set_default("prometheus_bind", d.prometheus_bind)?
            .set_default("prometheus_port", d.prometheus_port)?
            .set_default("data_dir", d.data_dir.to_string_lossy().into_owned())?
            .set_default("load_definitions", d.load_definitions)?
            .set_default("log_level", d.log_level)?
            .set_default("max_message_size", d.max_message_size)?
            .set_default("queue_memory_window", d.queue_memory_window as u64)?
            .set_default("transient_memory_limit", d.transient_memory_limit)?
            .set_default("disk_free_limit", d.disk_free_limit)?
            .set_default("memory_high_watermark", d.memory_high_watermark)?
            .set_default("consumer_timeout", d.consumer_timeout)?
            .set_default("default_user", d.default_user)?
            .set_default("default_pass", d.default_pass)?
            .set_default("default_vhost", d.default_vhost)?
            .set_default("loopback_users", d.loopback_users)?
            .set_default("plain_listener", d.plain_listener)?
            .set_default("tls_port", d.tls_port)?
            .set_default("tls_bind", d.tls_bind)?
            .set_default("tls_cert", d.tls_cert)?
            .set_default("tls_key", d.tls_key)?
            .set_default("tls_ca", d.tls_ca)?
            .set_default("tls_verify_peer", d.tls_verify_peer)?
            .set_default("tls_fail_if_no_peer_cert", d.tls_fail_if_no_peer_cert)?
            .set_default("tls_cert_login_from", d.tls_cert_login_from)?
            .set_default("mgmt_tls", d.mgmt_tls)?
            .set_default("mgmt_tls_port", d.mgmt_tls_port)?;
        b = match file {
            Some(path) => b.add_source(config::File::from(path).required(true)),
            None => b.add_source(config::File::with_name(DEFAULT_CONFIG_FILE).required(false)),
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut warren_env: config::Map<String, String> = env
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(ENV_PREFIX)?.strip_prefix('_')?.to_ascii_lowercase();
                Some((key, v.clone()))
            })
            .collect();
        // The RabbitMQ image's variables, for compose files written for it (WARREN_* win).
        for (rabbit, key) in RABBITMQ_ENV {
            if let Some((_, v)) = env.iter().find(|(k, _)| k == rabbit) {
                warren_env.entry(key.to_string()).or_insert_with(|| v.clone());
            }
        }
        let env = warren_env;
        b = b.add_source(config::Environment::default().source(Some(env)).try_parsing(true));
        b = b
            .set_override_option("bind", flags.bind.clone())?
            .set_override_option("port", flags.port)?
            .set_override_option("mgmt_bind", flags.mgmt_bind.clone())?
            .set_override_option("mgmt_port", flags.mgmt_port)?
            .set_override_option("prometheus_bind", flags.prometheus_bind.clone())?
            .set_override_option("prometheus_port", flags.prometheus_port)?
            .set_override_option("data_dir", flags.data_dir.as_ref().map(|p| p.to_string_lossy().into_owned()))?
            .set_override_option(
                "load_definitions",
                flags.load_definitions.as_ref().map(|p| p.to_string_lossy().into_owned()),
            )?
            .set_override_option("log_level", flags.log_level.clone())?
            .set_override_option("max_message_size", flags.max_message_size)?
            .set_override_option("memory_high_watermark", flags.memory_high_watermark.clone())?
            .set_override_option("plain_listener", flags.plain_listener)?
            .set_override_option("tls_port", flags.tls_port)?
            .set_override_option("tls_bind", flags.tls_bind.clone())?
            .set_override_option("tls_cert", path(&flags.tls_cert))?
            .set_override_option("tls_key", path(&flags.tls_key))?
            .set_override_option("tls_ca", path(&flags.tls_ca))?
            .set_override_option("tls_verify_peer", flags.tls_verify_peer)?
            .set_override_option("tls_fail_if_no_peer_cert", flags.tls_fail_if_no_peer_cert)?
            .set_override_option("tls_cert_login_from", flags.tls_cert_login_from.clone())?
            .set_override_option("mgmt_tls", flags.mgmt_tls)?
            .set_override_option("mgmt_tls_port", flags.mgmt_tls_port)?;
        b.build()?.try_deserialize()
    }
}

fn path(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        std::fs::write(&file, "port = 1111\ndata_dir = \"/from/file\"\nlog_level = \"debug\"\n").unwrap();

        let none = Overrides::default();
        let c = Config::load(Some(&file), env(&[]), &none).unwrap();
        assert_eq!((c.port, c.data_dir.as_path(), c.bind.as_str()), (1111, Path::new("/from/file"), "0.0.0.0"));

        let c = Config::load(Some(&file), env(&[("WARREN_PORT", "2222"), ("OTHER_PORT", "9")]), &none).unwrap();
        assert_eq!((c.port, c.log_level.as_str()), (2222, "debug"));
        assert_eq!(c.max_message_size, 16 * 1024 * 1024);
        let c = Config::load(None, env(&[("WARREN_MAX_MESSAGE_SIZE", "1024")]), &none).unwrap();
        assert_eq!(c.max_message_size, 1024);
        assert_eq!((c.mgmt_port, c.mgmt_bind.as_str()), (15672, "0.0.0.0"));
        let c =
            Config::load(None, env(&[("WARREN_MGMT_PORT", "0"), ("WARREN_MGMT_BIND", "127.0.0.1")]), &none).unwrap();
        assert_eq!((c.mgmt_port, c.mgmt_bind.as_str()), (0, "127.0.0.1"));
        assert_eq!((c.prometheus_port, c.prometheus_bind.as_str()), (15692, "0.0.0.0"));
        let e = env(&[("WARREN_PROMETHEUS_PORT", "0"), ("WARREN_PROMETHEUS_BIND", "127.0.0.1")]);
        let c = Config::load(None, e, &none).unwrap();
        assert_eq!((c.prometheus_port, c.prometheus_bind.as_str()), (0, "127.0.0.1"));
        let flags = Overrides { prometheus_port: Some(9999), ..Default::default() };
        let c = Config::load(None, env(&[("WARREN_PROMETHEUS_PORT", "0")]), &flags).unwrap();
        assert_eq!(c.prometheus_port, 9999);

        let flags = Overrides { port: Some(3333), ..Default::default() };
        let c =
            Config::load(Some(&file), env(&[("WARREN_PORT", "2222"), ("WARREN_DATA_DIR", "/env")]), &flags).unwrap();
        assert_eq!((c.port, c.data_dir.as_path()), (3333, Path::new("/env")));
    }

    #[test]
    fn rabbitmqs_default_user_variables_are_read_and_warrens_win() {
        let none = Overrides::default();
        let c = Config::load(None, env(&[("RABBITMQ_DEFAULT_USER", "app"), ("RABBITMQ_DEFAULT_PASS", "pw")]), &none)
            .unwrap();
        assert_eq!((c.default_user.as_str(), c.default_pass.as_str(), c.default_vhost.as_str()), ("app", "pw", "/"));
        let c =
            Config::load(None, env(&[("RABBITMQ_DEFAULT_USER", "app"), ("WARREN_DEFAULT_USER", "w")]), &none).unwrap();
        assert_eq!(c.default_user, "w");
        assert_eq!(Config::default().loopback_user_list(), ["guest"]);
        let c = Config::load(None, env(&[("WARREN_LOOPBACK_USERS", "none")]), &none).unwrap();
        assert!(c.loopback_user_list().is_empty());
    }

    #[test]
    fn tls_settings_layer_like_the_others() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!((c.tls_port, c.tls_cert.as_str(), c.plain_listener), (5671, "", true));
        assert_eq!(c.tls_cert_login_from, "distinguished_name");
        let e = env(&[
            ("WARREN_TLS_PORT", "5999"),
            ("WARREN_TLS_CERT", "/c.pem"),
            ("WARREN_TLS_VERIFY_PEER", "true"),
            ("WARREN_PLAIN_LISTENER", "false"),
        ]);
        let c = Config::load(None, e.clone(), &Overrides::default()).unwrap();
        assert_eq!(
            (c.tls_port, c.tls_cert.as_str(), c.tls_verify_peer, c.plain_listener),
            (5999, "/c.pem", true, false)
        );
        let flags = Overrides {
            tls_cert: Some(PathBuf::from("/f.pem")),
            tls_fail_if_no_peer_cert: Some(true),
            tls_cert_login_from: Some("common_name".into()),
            ..Default::default()
        };
        let c = Config::load(None, e, &flags).unwrap();
        assert_eq!((c.tls_cert.as_str(), c.tls_fail_if_no_peer_cert), ("/f.pem", true));
        assert_eq!(c.tls_cert_login_from, "common_name");
    }

    #[test]
    fn the_memory_watermark_is_relative_or_absolute() {
        use crate::broker::vm_memory::Watermark;
        let none = Overrides::default();
        let c = Config::load(None, env(&[]), &none).unwrap();
        assert_eq!(c.memory_watermark(), Ok(Watermark::Relative(0.6)));
        let c = Config::load(None, env(&[("WARREN_MEMORY_HIGH_WATERMARK", "0.4")]), &none).unwrap();
        assert_eq!(c.memory_watermark(), Ok(Watermark::Relative(0.4)));
        let flags = Overrides { memory_high_watermark: Some("512MiB".into()), ..Default::default() };
        let c = Config::load(None, env(&[("WARREN_MEMORY_HIGH_WATERMARK", "0.4")]), &flags).unwrap();
        assert_eq!(c.memory_watermark(), Ok(Watermark::Absolute(512 << 20)));
        let c = Config::load(None, env(&[("WARREN_MEMORY_HIGH_WATERMARK", "lots")]), &none).unwrap();
        assert!(c.memory_watermark().is_err());
    }

    #[test]
    fn bad_values_and_missing_explicit_files_are_errors() {
        assert!(Config::load(None, env(&[("WARREN_PORT", "not-a-port")]), &Overrides::default()).is_err());
        assert!(Config::load(Some(Path::new("/no/such/warren.toml")), env(&[]), &Overrides::default()).is_err());
    }
}
