//! Typed settings for a signalgrid node.
//!
//! Owns: the `Settings` tree with its defaults, loading it from a TOML file, and applying
//! overrides (environment variables and command-line flags) by dotted key, each checked and
//! reported with the key's name when it is bad.
//! Must not: read the process environment or files on its own initiative. The binary passes
//! the environment in (`apply_env`), so tests and library users stay in control.

mod cluster;
mod drain;
mod http;
mod keys;
mod limits;
mod resume;
mod webhooks;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use cluster::{ClusterSettings, PublishQueueSettings};
pub use drain::DrainSettings;
pub use http::{AddressRange, HttpSettings};
pub use keys::{EnvKey, ENV_KEYS};
pub use limits::LimitSettings;
pub use resume::ResumeSettings;
pub use webhooks::WebhookSettings;

/// A setting that could not be accepted; always names the key (and the source of the value).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid value for {key} ({source_name}): {reason}")]
    Invalid { key: String, source_name: String, reason: String },
    #[error("unknown setting {0}")]
    Unknown(String),
}

/// Open files a node keeps for what is not a client WebSocket: the listener, the NATS
/// connection, the store's files or MongoDB pool (up to 10 sockets per host plus monitors),
/// stdio, the runtime's epoll and event fds, REST requests in flight. Subtracted from the
/// open-files limit before `limits.max_connections` is compared with it
/// ([`Settings::check_open_files`]).
pub const NON_SOCKET_FILES: u64 = 64;

/// Where the log output goes and how it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Everything a node needs to know at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP/WebSocket listener binds.
    pub listen: SocketAddr,
    /// Directory of the embedded store file.
    pub data_dir: PathBuf,
    /// Identifies this node in `connected` frames, logs and (later) the cluster. Made up
    /// at start when unset.
    pub node_id: Option<String>,
    pub auth: AuthSettings,
    pub ice: IceSettings,
    pub limits: LimitSettings,
    pub rooms: RoomSettings,
    pub log: LogSettings,
    pub privacy: PrivacySettings,
    pub tls: TlsSettings,
    pub cluster: ClusterSettings,
    pub store: StoreSettings,
    pub http: HttpSettings,
    pub retention: RetentionSettings,
    /// Seats that outlive their sockets (PROTOCOL.md section 6).
    pub resume: ResumeSettings,
    pub drain: DrainSettings,
    /// Signed event deliveries to the platform (PROTOCOL.md section 7).
    pub webhooks: WebhookSettings,
    /// Origins whose pages may open a WebSocket and call the REST API cross-origin (exact
    /// match of the `Origin` header; CORS answers go to these only). Empty: any origin.
    /// Requests without an `Origin` header (non-browser clients) always pass.
    pub allowed_origins: Vec<String>,
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret shared with the platform that signs the tokens.
    pub jwt_secret: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Optional PEM public key for RS256/ES256 tokens.
    pub public_key_path: Option<PathBuf>,
    /// `RS256` or `ES256`; required with `public_key_path`.
    pub public_key_alg: Option<String>,
    /// Accepted `aud` values (RFC 7519 §4.1.3). Set: a token must carry `aud` (a string or
    /// an array) naming at least one of them. Empty: `aud` is not checked. In a file, a
    /// string or an array of strings.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// Accepted `iss` values (RFC 7519 §4.1.1). Set: a token must carry `iss` equal to one of
    /// them. Empty: `iss` is not checked. In a file, a string or an array of strings.
    #[serde(deserialize_with = "one_or_many")]
    pub issuer: Vec<String>,
}

/// A TOML value that is one string or an array of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IceSettings {
    pub stun_urls: Vec<String>,
    pub turn_url: Option<String>,
    pub turn_username: Option<String>,
    pub turn_password: Option<String>,
    /// Shared secret for time-limited TURN credentials (TURN REST convention). When set it
    /// wins over the static username/password.
    pub turn_secret: Option<String>,
    pub turn_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomSettings {
    /// How early before `sessionDate` joining opens, in minutes.
    pub join_window_minutes: i64,
    /// How long after the scheduled end joining stays open, in minutes.
    pub grace_minutes: i64,
    /// Capacity of a Group session's room.
    pub group_capacity: usize,
    /// Admins skip the payment and time-window rules.
    pub admin_bypass: bool,
    /// Members are removed (`OUTSIDE_TIME_WINDOW`) when the join window ends during a call,
    /// after the `session-ending` warnings; false: calls run on past the window, unwarned.
    pub enforce_window_end: bool,
    /// `waitingRoom` of a session created without one (`POST /api/sessions`): its clients
    /// wait until a host admits them (PROTOCOL.md section 8).
    pub waiting_room: bool,
    /// A started call whose room has had no member for this long ends by itself (ms;
    /// PROTOCOL.md section 8). A seat away in its resume window counts as a member.
    pub empty_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter: `info`, `debug`, `signalgrid=debug,warn`, ...
    pub level: String,
    pub format: LogFormat,
    /// Write the audit trail (join attempts, joins, call start/end, errors) to the store.
    pub audit_enabled: bool,
}

/// What the node's own log lines may say about people (issue: data minimisation, as HIPAA
/// modes of other video products do).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// Ids only: no client addresses in the node's log lines (names and user agents are never
    /// logged, and libraries' payload traces are always dropped).
    pub minimise_logs: bool,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        PrivacySettings { minimise_logs: true }
    }
}

/// Where sessions are stored. Without `mongodb_uri`, the embedded store in `data_dir`.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `mongodb://…` or `mongodb+srv://…`.
    pub mongodb_uri: Option<String>,
    pub mongodb_database: String,
    /// With MongoDB unreachable at start: false = fail start-up; true = start not ready
    /// (`/readyz` 503) and keep trying.
    pub start_unready: bool,
    /// Call records kept on the node (durably) while the store is unreachable.
    pub outbox_max: usize,
    /// Keys that seal what signalgrid writes about people (PROTOCOL.md section 9):
    /// `kid:base64(32 bytes)`, comma-separated; the first seals, every one opens. Unset:
    /// written as plaintext. Checked when the store opens (src/store/seal.rs).
    pub encryption_keys: Option<String>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            mongodb_uri: None,
            mongodb_database: "signalgrid".into(),
            start_unready: false,
            outbox_max: 100_000,
            encryption_keys: None,
        }
    }
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("mongodb_uri", &redact(&self.mongodb_uri))
            .field("mongodb_database", &self.mongodb_database)
            .field("start_unready", &self.start_unready)
            .field("outbox_max", &self.outbox_max)
            .field("encryption_keys", &redact(&self.encryption_keys))
            .finish()
    }
}

/// How long signalgrid keeps what it writes, and how it purges the rest (PROTOCOL.md
/// section 9). One node of a cluster purges at a time (a lock in NATS); docs/security.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Audit entries older than this many days are purged; 0 keeps them forever. Default
    /// 2190 (six years): HIPAA keeps required documentation six years (45 CFR
    /// 164.316(b)(2)(i)), and an audit trail is commonly held to the same.
    pub audit_days: u32,
    /// How often a node checks for entries to purge, in seconds.
    pub purge_every_secs: u64,
    /// Most entries deleted in one store call; calls for joins run between batches.
    pub purge_batch: usize,
    /// Webhook events delivered (or given up) more than this many days ago are purged; 0
    /// keeps them. Default 7.
    pub webhook_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings { audit_days: 2190, purge_every_secs: 3600, purge_batch: 1000, webhook_days: 7 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            node_id: None,
            auth: AuthSettings::default(),
            ice: IceSettings::default(),
            limits: LimitSettings::default(),
            rooms: RoomSettings::default(),
            log: LogSettings::default(),
            privacy: PrivacySettings::default(),
            tls: TlsSettings::default(),
            cluster: ClusterSettings::default(),
            store: StoreSettings::default(),
            http: HttpSettings::default(),
            retention: RetentionSettings::default(),
            resume: ResumeSettings::default(),
            drain: DrainSettings::default(),
            webhooks: WebhookSettings::default(),
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: None,
            leeway_secs: 30,
            public_key_path: None,
            public_key_alg: None,
            audience: Vec::new(),
            issuer: Vec::new(),
        }
    }
}

impl Default for IceSettings {
    fn default() -> Self {
        IceSettings {
            stun_urls: vec!["stun:stun.l.google.com:19302".into()],
            turn_url: None,
            turn_username: None,
            turn_password: None,
            turn_secret: None,
            turn_ttl_secs: 86_400,
        }
    }
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            join_window_minutes: 15,
            grace_minutes: 30,
            group_capacity: 8,
            admin_bypass: false,
            enforce_window_end: true,
            waiting_room: false,
            empty_timeout_ms: 120_000,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".into(), format: LogFormat::Text, audit_enabled: true }
    }
}

/// Secrets never reach a log through `Debug`.
fn redact(v: &Option<String>) -> &'static str {
    if v.is_some() {
        "<set>"
    } else {
        "<unset>"
    }
}

/// `url` with the password of every `user:password@` replaced by `<redacted>` (URL lists
/// separated by commas included).
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let creds = &u[scheme + 3..at];
                match creds.split_once(':') {
                    Some((user, _)) => format!("{}{user}:<redacted>{}", &u[..scheme + 3], &u[at..]),
                    None => format!("{}<redacted>{}", &u[..scheme + 3], &u[at..]),
                }
            }
            _ => u.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &redact(&self.jwt_secret))
            .field("leeway_secs", &self.leeway_secs)
            .field("public_key_path", &self.public_key_path)
            .field("public_key_alg", &self.public_key_alg)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl fmt::Debug for IceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceSettings")
            .field("stun_urls", &self.stun_urls)
            .field("turn_url", &self.turn_url)
            .field("turn_username", &self.turn_username)
            .field("turn_password", &redact(&self.turn_password))
            .field("turn_secret", &redact(&self.turn_secret))
            .field("turn_ttl_secs", &self.turn_ttl_secs)
            .finish()
    }
}

impl Settings {
    /// Reads a TOML file; keys it does not set keep their defaults.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File { path: path.to_owned(), message: e.to_string() })?;
        toml::from_str(&text).map_err(|e| ConfigError::File { path: path.to_owned(), message: e.to_string() })
    }

    /// Applies every known environment variable present in `vars`.
    pub fn apply_env<I, K, V>(&mut self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (name, value) in vars {
            if let Some(k) = ENV_KEYS.iter().find(|k| k.env == name.as_ref()) {
                self.set(k.key, value.as_ref(), k.env)?;
            }
        }
        Ok(())
    }

    /// Sets one setting by its dotted key (`limits.max_frame_bytes`), parsing `value`.
    /// `source_name` says where the value came from, for the error message.
    pub fn set(&mut self, key: &str, value: &str, source_name: &str) -> Result<(), ConfigError> {
        keys::set(self, key, value).map_err(|reason| match reason {
            keys::SetError::Unknown => ConfigError::Unknown(key.to_owned()),
            keys::SetError::Bad(reason) => {
                ConfigError::Invalid { key: key.to_owned(), source_name: source_name.to_owned(), reason }
            }
        })
    }

    /// The cap on open HTTP connections, WebSockets included: `http.max_connections`, or
    /// `limits.max_connections` + 1,024 when unset.
    pub fn http_max_connections(&self) -> usize {
        self.http.max_connections.unwrap_or(self.limits.max_connections.saturating_add(1_024))
    }

    /// Checks that `limits.max_connections` WebSocket connections fit in `open_files`, the
    /// node's open-files limit (RLIMIT_NOFILE, after `serve` raised its soft limit to the hard
    /// one). Each connection holds one socket; [`NON_SOCKET_FILES`] more are kept for
    /// everything else. Errors with `Invalid` on `limits.max_connections`, naming both numbers.
    pub fn check_open_files(&self, open_files: u64) -> Result<(), ConfigError> {
        let wanted = self.limits.max_connections as u64;
        let room = open_files.saturating_sub(NON_SOCKET_FILES);
        if wanted <= room {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            key: "limits.max_connections".into(),
            source_name: "SOCKET_CONNECTION_LIMIT".into(),
            reason: format!(
                "{wanted} connections do not fit in the open-files limit (RLIMIT_NOFILE) of {open_files}: \
                 with {NON_SOCKET_FILES} kept for other files, at most {room}; lower SOCKET_CONNECTION_LIMIT \
                 or raise the hard limit (systemd LimitNOFILE=, docker --ulimit nofile=, ulimit -Hn)"
            ),
        })
    }

    /// Checks relations between settings that single values cannot show.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.into(),
            source_name: "settings".into(),
            reason: reason.into(),
        };
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_connections", l.max_connections),
            ("limits.max_frame_bytes", l.max_frame_bytes),
            ("limits.outbound_queue", l.outbound_queue),
            ("resume.buffer_frames", self.resume.buffer_frames),
            ("resume.buffer_bytes", self.resume.buffer_bytes),
            ("rooms.group_capacity", self.rooms.group_capacity),
        ] {
            if v == 0 {
                return Err(bad(key, "must be greater than 0"));
            }
        }
        if l.heartbeat_ms < 100 {
            return Err(bad("limits.heartbeat_ms", "must be at least 100"));
        }
        if l.ws_messages_per_sec == 0 || l.ws_bytes_per_sec == 0 || l.rest_per_minute == 0 || l.chat_per_minute == 0 {
            return Err(bad("limits", "rates must be greater than 0"));
        }
        if l.ws_burst_bytes < l.max_frame_bytes {
            return Err(bad("limits.ws_burst_bytes", "must be at least limits.max_frame_bytes"));
        }
        if self.rooms.empty_timeout_ms == 0 {
            return Err(bad("rooms.empty_timeout_ms", "must be greater than 0"));
        }
        if self.rooms.join_window_minutes < 0 || self.rooms.grace_minutes < 0 {
            return Err(bad("rooms", "minutes must not be negative"));
        }
        if self.cluster.presence_ms < 50 || self.cluster.dead_after_ms < 2 * self.cluster.presence_ms {
            return Err(bad("cluster.dead_after_ms", "must be at least twice cluster.presence_ms (>= 50)"));
        }
        if self.cluster.nats_tls_cert.is_some() != self.cluster.nats_tls_key.is_some() {
            return Err(bad("cluster", "nats_tls_cert and nats_tls_key go together"));
        }
        let valid_name =
            |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name(&self.cluster.name) {
            return Err(bad("cluster.name", "letters, digits, '-' and '_' only"));
        }
        let h = &self.http;
        for (key, v) in [
            ("cluster.queue.max_bytes", self.cluster.queue.max_bytes),
            ("http.header_timeout_ms", h.header_timeout_ms as usize),
            ("http.body_timeout_ms", h.body_timeout_ms as usize),
            ("http.write_timeout_ms", h.write_timeout_ms as usize),
            ("http.max_connections", h.max_connections.unwrap_or(1)),
            ("http.max_connections_per_ip", h.max_connections_per_ip),
        ] {
            if v == 0 {
                return Err(bad(key, "must be greater than 0"));
            }
        }
        if !(l.connect_rate.is_finite() && l.connect_rate >= 0.001) {
            return Err(bad("limits.connect_rate", "must be a number of at least 0.001 (one upgrade in 1000 s)"));
        }
        if !(1..=1_000_000).contains(&l.connect_burst) {
            return Err(bad("limits.connect_burst", "must be 1 to 1000000"));
        }
        if self.drain.batch_size == 0 {
            return Err(bad("drain.batch_size", "must be at least 1"));
        }
        if self.store.outbox_max == 0 {
            return Err(bad("store.outbox_max", "must be greater than 0"));
        }
        if !(1..=100_000).contains(&self.retention.purge_batch) {
            return Err(bad("retention.purge_batch", "must be 1 to 100000"));
        }
        if self.retention.purge_every_secs == 0 {
            return Err(bad("retention.purge_every_secs", "must be greater than 0"));
        }
        let w = &self.webhooks;
        if w.enabled() && w.secret.as_deref().is_none_or(|s| s.len() < 16) {
            return Err(bad("webhooks.secret", "must be set, at least 16 characters, when webhooks.urls is"));
        }
        if let Some(u) = w.urls.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(bad("webhooks.urls", &format!("{} is not an http(s) URL", redact_url(u))));
        }
        for (key, v) in [
            ("webhooks.max_age_secs", w.max_age_secs),
            ("webhooks.retry_initial_ms", w.retry_initial_ms),
            ("webhooks.timeout_ms", w.timeout_ms),
            ("webhooks.max_waiting", w.max_waiting),
            ("webhooks.poll_ms", w.poll_ms),
        ] {
            if v == 0 {
                return Err(bad(key, "must be greater than 0"));
            }
        }
        if w.retry_max_ms < w.retry_initial_ms {
            return Err(bad("webhooks.retry_max_ms", "must be at least webhooks.retry_initial_ms"));
        }
        if self.tls.cert_path.is_some() != self.tls.key_path.is_some() {
            return Err(bad("tls", "cert_path and key_path go together"));
        }
        if self.auth.public_key_path.is_some() {
            match self.auth.public_key_alg.as_deref() {
                Some("RS256") | Some("ES256") => {}
                _ => return Err(bad("auth.public_key_alg", "must be RS256 or ES256")),
            }
        }
        for (key, values) in [("auth.audience", &self.auth.audience), ("auth.issuer", &self.auth.issuer)] {
            if values.iter().any(|v| v.trim().is_empty()) {
                return Err(bad(key, "values must not be empty"));
            }
        }
        if matches!(&self.auth.jwt_secret, Some(s) if s.len() < 16) {
            return Err(bad("auth.jwt_secret", "must be at least 16 characters"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
