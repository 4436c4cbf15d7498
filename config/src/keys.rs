//! The table of settable keys: dotted key -> field, and environment variable -> dotted key.
//!
//! One place knows how to parse each setting from text, shared by env vars and CLI flags.

use std::path::PathBuf;
use std::str::FromStr;

use crate::{LogFormat, Settings};

/// An environment variable and the dotted key it sets.
#[derive(Debug, Clone, Copy)]
pub struct EnvKey {
    pub env: &'static str,
    pub key: &'static str,
}

const fn k(env: &'static str, key: &'static str) -> EnvKey {
    EnvKey { env, key }
}

/// Every environment variable a node reads: the seed platform's names first.
pub const ENV_KEYS: &[EnvKey] = &[
    k("VIDEO_CALL_JWT_SECRET", "auth.jwt_secret"),
    k("VIDEO_CALL_ENCRYPTION_KEY", "store.encryption_keys"),
    k("STUN_SERVER_URL", "ice.stun_urls"),
    k("TURN_SERVER_URL", "ice.turn_url"),
    k("TURN_USERNAME", "ice.turn_username"),
    k("TURN_PASSWORD", "ice.turn_password"),
    k("VIDEO_CALL_RATE_LIMIT", "limits.rest_per_minute"),
    k("SOCKET_CONNECTION_LIMIT", "limits.max_connections"),
    k("VIDEO_CALL_LOG_LEVEL", "log.level"),
    k("AUDIT_LOG_ENABLED", "log.audit_enabled"),
    k("SIGNALGRID_MINIMISE_LOGS", "privacy.minimise_logs"),
    k("SIGNALGRID_LISTEN", "listen"),
    k("SIGNALGRID_DATA_DIR", "data_dir"),
    k("SIGNALGRID_NODE_ID", "node_id"),
    k("SIGNALGRID_JWT_LEEWAY_SECS", "auth.leeway_secs"),
    k("SIGNALGRID_JWT_PUBLIC_KEY", "auth.public_key_path"),
    k("SIGNALGRID_JWT_PUBLIC_KEY_ALG", "auth.public_key_alg"),
    k("SIGNALGRID_JWT_AUDIENCE", "auth.audience"),
    k("SIGNALGRID_JWT_ISSUER", "auth.issuer"),
    k("SIGNALGRID_TURN_SECRET", "ice.turn_secret"),
    k("SIGNALGRID_TURN_TTL_SECS", "ice.turn_ttl_secs"),
    k("SIGNALGRID_RATE_LIMIT_EXEMPT_ADMINS", "limits.exempt_admins"),
    k("SIGNALGRID_MAX_FRAME_BYTES", "limits.max_frame_bytes"),
    k("SIGNALGRID_WS_RATE", "limits.ws_messages_per_sec"),
    k("SIGNALGRID_WS_BURST", "limits.ws_burst"),
    k("SIGNALGRID_WS_BYTES_RATE", "limits.ws_bytes_per_sec"),
    k("SIGNALGRID_WS_BURST_BYTES", "limits.ws_burst_bytes"),
    k("SIGNALGRID_OUTBOUND_QUEUE", "limits.outbound_queue"),
    k("SIGNALGRID_HEARTBEAT_MS", "limits.heartbeat_ms"),
    k("SIGNALGRID_RESUME_WINDOW_MS", "resume.window_ms"),
    k("SIGNALGRID_RESUME_BUFFER_FRAMES", "resume.buffer_frames"),
    k("SIGNALGRID_RESUME_BUFFER_BYTES", "resume.buffer_bytes"),
    k("SIGNALGRID_RESUME_SECRET", "resume.secret"),
    k("SIGNALGRID_CONNECT_RATE", "limits.connect_rate"),
    k("SIGNALGRID_CONNECT_BURST", "limits.connect_burst"),
    k("SIGNALGRID_DRAIN_BATCH_SIZE", "drain.batch_size"),
    k("SIGNALGRID_DRAIN_BATCH_INTERVAL_MS", "drain.batch_interval_ms"),
    k("SIGNALGRID_JOIN_WINDOW_MINUTES", "rooms.join_window_minutes"),
    k("SIGNALGRID_GRACE_MINUTES", "rooms.grace_minutes"),
    k("SIGNALGRID_GROUP_CAPACITY", "rooms.group_capacity"),
    k("SIGNALGRID_ADMIN_BYPASS", "rooms.admin_bypass"),
    k("SIGNALGRID_ENFORCE_WINDOW_END", "rooms.enforce_window_end"),
    k("SIGNALGRID_SESSION_ENDING_MINUTES", "limits.session_ending_minutes"),
    k("SIGNALGRID_WAITING_ROOM", "rooms.waiting_room"),
    k("SIGNALGRID_EMPTY_TIMEOUT_MS", "rooms.empty_timeout_ms"),
    k("SIGNALGRID_CHAT_PER_MINUTE", "limits.chat_per_minute"),
    k("SIGNALGRID_LOG_FORMAT", "log.format"),
    k("SIGNALGRID_TLS_CERT", "tls.cert_path"),
    k("SIGNALGRID_TLS_KEY", "tls.key_path"),
    k("SIGNALGRID_ALLOWED_ORIGINS", "allowed_origins"),
    k("SIGNALGRID_NATS_URL", "cluster.nats_url"),
    k("SIGNALGRID_CLUSTER", "cluster.name"),
    k("SIGNALGRID_NATS_USER", "cluster.nats_user"),
    k("SIGNALGRID_NATS_PASSWORD", "cluster.nats_password"),
    k("SIGNALGRID_NATS_TOKEN", "cluster.nats_token"),
    k("SIGNALGRID_NATS_CREDS", "cluster.nats_creds_path"),
    k("SIGNALGRID_NATS_TLS_CA", "cluster.nats_tls_ca"),
    k("SIGNALGRID_NATS_TLS_CERT", "cluster.nats_tls_cert"),
    k("SIGNALGRID_NATS_TLS_KEY", "cluster.nats_tls_key"),
    k("SIGNALGRID_PRESENCE_MS", "cluster.presence_ms"),
    k("SIGNALGRID_DEAD_AFTER_MS", "cluster.dead_after_ms"),
    k("SIGNALGRID_MONGODB_URI", "store.mongodb_uri"),
    k("SIGNALGRID_MONGODB_DATABASE", "store.mongodb_database"),
    k("SIGNALGRID_STORE_START_UNREADY", "store.start_unready"),
    k("SIGNALGRID_OUTBOX_MAX", "store.outbox_max"),
    k("SIGNALGRID_PUBLISH_QUEUE_BYTES", "cluster.queue.max_bytes"),
    k("SIGNALGRID_RELAY_MAX_AGE_MS", "cluster.queue.relay_max_age_ms"),
    k("SIGNALGRID_HTTP_HEADER_TIMEOUT_MS", "http.header_timeout_ms"),
    k("SIGNALGRID_HTTP_BODY_TIMEOUT_MS", "http.body_timeout_ms"),
    k("SIGNALGRID_HTTP_WRITE_TIMEOUT_MS", "http.write_timeout_ms"),
    k("SIGNALGRID_HTTP_MAX_CONNECTIONS", "http.max_connections"),
    k("SIGNALGRID_HTTP_MAX_CONNECTIONS_PER_IP", "http.max_connections_per_ip"),
    k("SIGNALGRID_HTTP_PROXY_ADDRESSES", "http.proxy_addresses"),
    k("SIGNALGRID_AUDIT_RETENTION_DAYS", "retention.audit_days"),
    k("SIGNALGRID_PURGE_EVERY_SECS", "retention.purge_every_secs"),
    k("SIGNALGRID_PURGE_BATCH", "retention.purge_batch"),
    k("SIGNALGRID_WEBHOOK_RETENTION_DAYS", "retention.webhook_days"),
    k("SIGNALGRID_WEBHOOK_URLS", "webhooks.urls"),
    k("SIGNALGRID_WEBHOOK_SECRET", "webhooks.secret"),
    k("SIGNALGRID_WEBHOOK_MAX_AGE_SECS", "webhooks.max_age_secs"),
    k("SIGNALGRID_WEBHOOK_RETRY_INITIAL_MS", "webhooks.retry_initial_ms"),
    k("SIGNALGRID_WEBHOOK_RETRY_MAX_MS", "webhooks.retry_max_ms"),
    k("SIGNALGRID_WEBHOOK_TIMEOUT_MS", "webhooks.timeout_ms"),
    k("SIGNALGRID_WEBHOOK_MAX_WAITING", "webhooks.max_waiting"),
    k("SIGNALGRID_WEBHOOK_POLL_MS", "webhooks.poll_ms"),
];

pub(crate) enum SetError {
    Unknown,
    Bad(String),
}

fn parse<T: FromStr>(v: &str) -> Result<T, SetError>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse().map_err(|e: T::Err| SetError::Bad(format!("{e} (got {v:?})")))
}

fn boolean(v: &str) -> Result<bool, SetError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(SetError::Bad(format!("expected true or false (got {v:?})"))),
    }
}

fn opt_string(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

pub(crate) fn set(s: &mut Settings, key: &str, v: &str) -> Result<(), SetError> {
    match key {
        "listen" => s.listen = parse(v)?,
        "data_dir" => s.data_dir = PathBuf::from(v),
        "node_id" => s.node_id = opt_string(v),
        "allowed_origins" => s.allowed_origins = list(v),
        "auth.jwt_secret" => s.auth.jwt_secret = opt_string(v),
        "auth.leeway_secs" => s.auth.leeway_secs = parse(v)?,
        "auth.public_key_path" => s.auth.public_key_path = opt_string(v).map(PathBuf::from),
        "auth.public_key_alg" => s.auth.public_key_alg = opt_string(v),
        "auth.audience" => s.auth.audience = list(v),
        "auth.issuer" => s.auth.issuer = list(v),
        "ice.stun_urls" => s.ice.stun_urls = list(v),
        "ice.turn_url" => s.ice.turn_url = opt_string(v),
        "ice.turn_username" => s.ice.turn_username = opt_string(v),
        "ice.turn_password" => s.ice.turn_password = opt_string(v),
        "ice.turn_secret" => s.ice.turn_secret = opt_string(v),
        "ice.turn_ttl_secs" => s.ice.turn_ttl_secs = parse(v)?,
        "limits.rest_per_minute" => s.limits.rest_per_minute = parse(v)?,
        "limits.exempt_admins" => s.limits.exempt_admins = boolean(v)?,
        "limits.max_connections" => s.limits.max_connections = parse(v)?,
        "limits.max_frame_bytes" => s.limits.max_frame_bytes = parse(v)?,
        "limits.ws_messages_per_sec" => s.limits.ws_messages_per_sec = parse(v)?,
        "limits.ws_burst" => s.limits.ws_burst = parse(v)?,
        "limits.ws_bytes_per_sec" => s.limits.ws_bytes_per_sec = parse(v)?,
        "limits.ws_burst_bytes" => s.limits.ws_burst_bytes = parse(v)?,
        "limits.outbound_queue" => s.limits.outbound_queue = parse(v)?,
        "limits.heartbeat_ms" => s.limits.heartbeat_ms = parse(v)?,
        "limits.connect_rate" => s.limits.connect_rate = parse(v)?,
        "limits.connect_burst" => s.limits.connect_burst = parse(v)?,
        "drain.batch_size" => s.drain.batch_size = parse(v)?,
        "drain.batch_interval_ms" => s.drain.batch_interval_ms = parse(v)?,
        "rooms.join_window_minutes" => s.rooms.join_window_minutes = parse(v)?,
        "rooms.grace_minutes" => s.rooms.grace_minutes = parse(v)?,
        "rooms.group_capacity" => s.rooms.group_capacity = parse(v)?,
        "rooms.admin_bypass" => s.rooms.admin_bypass = boolean(v)?,
        "rooms.enforce_window_end" => s.rooms.enforce_window_end = boolean(v)?,
        "limits.session_ending_minutes" => {
            s.limits.session_ending_minutes = list(v).iter().map(|m| parse(m)).collect::<Result<_, _>>()?
        }
        "rooms.waiting_room" => s.rooms.waiting_room = boolean(v)?,
        "rooms.empty_timeout_ms" => s.rooms.empty_timeout_ms = parse(v)?,
        "limits.chat_per_minute" => s.limits.chat_per_minute = parse(v)?,
        "log.level" => s.log.level = v.trim().to_owned(),
        "log.format" => {
            s.log.format = match v.trim() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(SetError::Bad(format!("expected text or json (got {v:?})"))),
            }
        }
        "log.audit_enabled" => s.log.audit_enabled = boolean(v)?,
        "privacy.minimise_logs" => s.privacy.minimise_logs = boolean(v)?,
        "tls.cert_path" => s.tls.cert_path = opt_string(v).map(PathBuf::from),
        "tls.key_path" => s.tls.key_path = opt_string(v).map(PathBuf::from),
        "cluster.nats_url" => s.cluster.nats_url = opt_string(v),
        "cluster.name" => s.cluster.name = v.trim().to_owned(),
        "cluster.nats_user" => s.cluster.nats_user = opt_string(v),
        "cluster.nats_password" => s.cluster.nats_password = opt_string(v),
        "cluster.nats_token" => s.cluster.nats_token = opt_string(v),
        "cluster.nats_creds_path" => s.cluster.nats_creds_path = opt_string(v).map(PathBuf::from),
        "cluster.nats_tls_ca" => s.cluster.nats_tls_ca = opt_string(v).map(PathBuf::from),
        "cluster.nats_tls_cert" => s.cluster.nats_tls_cert = opt_string(v).map(PathBuf::from),
        "cluster.nats_tls_key" => s.cluster.nats_tls_key = opt_string(v).map(PathBuf::from),
        "cluster.presence_ms" => s.cluster.presence_ms = parse(v)?,
        "cluster.dead_after_ms" => s.cluster.dead_after_ms = parse(v)?,
        "store.mongodb_uri" => s.store.mongodb_uri = opt_string(v),
        "store.mongodb_database" => s.store.mongodb_database = v.trim().to_owned(),
        "store.start_unready" => s.store.start_unready = boolean(v)?,
        "store.outbox_max" => s.store.outbox_max = parse(v)?,
        "store.encryption_keys" => s.store.encryption_keys = opt_string(v),
        "cluster.queue.max_bytes" => s.cluster.queue.max_bytes = parse(v)?,
        "cluster.queue.relay_max_age_ms" => s.cluster.queue.relay_max_age_ms = parse(v)?,
        "http.header_timeout_ms" => s.http.header_timeout_ms = parse(v)?,
        "http.body_timeout_ms" => s.http.body_timeout_ms = parse(v)?,
        "http.write_timeout_ms" => s.http.write_timeout_ms = parse(v)?,
        "http.max_connections" => s.http.max_connections = opt_string(v).map(|v| parse(&v)).transpose()?,
        "http.max_connections_per_ip" => s.http.max_connections_per_ip = parse(v)?,
        "http.proxy_addresses" => {
            s.http.proxy_addresses =
                list(v).iter().map(|a| a.parse()).collect::<Result<_, _>>().map_err(SetError::Bad)?
        }
        "retention.audit_days" => s.retention.audit_days = parse(v)?,
        "retention.purge_every_secs" => s.retention.purge_every_secs = parse(v)?,
        "retention.purge_batch" => s.retention.purge_batch = parse(v)?,
        "retention.webhook_days" => s.retention.webhook_days = parse(v)?,
        "webhooks.urls" => s.webhooks.urls = list(v),
        "webhooks.secret" => s.webhooks.secret = opt_string(v),
        "webhooks.max_age_secs" => s.webhooks.max_age_secs = parse(v)?,
        "webhooks.retry_initial_ms" => s.webhooks.retry_initial_ms = parse(v)?,
        "webhooks.retry_max_ms" => s.webhooks.retry_max_ms = parse(v)?,
        "webhooks.timeout_ms" => s.webhooks.timeout_ms = parse(v)?,
        "webhooks.max_waiting" => s.webhooks.max_waiting = parse(v)?,
        "webhooks.poll_ms" => s.webhooks.poll_ms = parse(v)?,
        "resume.window_ms" => s.resume.window_ms = parse(v)?,
        "resume.buffer_frames" => s.resume.buffer_frames = parse(v)?,
        "resume.buffer_bytes" => s.resume.buffer_bytes = parse(v)?,
        "resume.secret" => s.resume.secret = opt_string(v),
        _ => return Err(SetError::Unknown),
    }
    Ok(())
}
