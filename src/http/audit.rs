//! `GET /api/audit` (admin): the audit trail, filtered, newest first, in cursor pages or
//! streamed as NDJSON (PROTOCOL.md sections 9 and 10, "Audit API"). Every request that reads
//! records one `audit_read` entry (who, which filters) before any entry is handed out; when
//! that write fails, nothing is read (503).
//!
//! Also the entry's JSON shape, shared with `signalgrid audit export`.

use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::identity::Identity;
use signalgrid_actors::ports::{Store, StoreError};
use signalgrid_actors::session::{now_ms, AuditAction, AuditCursor, AuditEntry, AuditFilter};
use std::sync::Arc;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::Reply as _;

use super::context::{ok, Ctx, Reply};
use super::error::ApiError;
#[allow(unused_imports)] // The schemas are named in the `utoipa::path` attributes.
use super::openapi::schemas::{AuditPage, AuditParams, ErrorBody};

/// Page size without `limit`.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;
/// Entries read from the store per batch of an NDJSON stream.
pub const STREAM_BATCH: usize = 500;
/// Batches an NDJSON stream reads ahead of a slow reader (so memory stays bounded).
const STREAM_AHEAD: usize = 2;
/// Longest `sessionId` / `userId` filter accepted, in bytes.
const MAX_ID_LEN: usize = 200;

/// An entry as the API and the CLI show it: `timestamp` ISO 8601 (UTC, milliseconds),
/// `sessionId` null for entries about no session (an `audit_read` without a session filter).
pub fn entry_json(e: &AuditEntry) -> Value {
    json!({
        "timestamp": e.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        "action": e.action.as_str(),
        "sessionId": (!e.session_id.is_empty()).then_some(&e.session_id),
        "userId": e.user_id,
        "ipAddress": e.ip_address,
        "userAgent": e.user_agent,
        "metadata": e.metadata,
    })
}

/// A cursor as the API hands it out: base64url of `<timestamp ms>:<store id>`.
pub fn encode_cursor(c: &AuditCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", c.timestamp_ms, c.id))
}

fn decode_cursor(s: &str) -> Option<AuditCursor> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (ts, id) = text.split_once(':')?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(AuditCursor { timestamp_ms: ts.parse().ok()?, id: id.to_owned() })
}

/// `v`, noting `why` under `key` in `bad` when it is None.
fn check<T>(v: Option<T>, bad: &mut Map<String, Value>, key: &str, why: &str) -> Option<T> {
    if v.is_none() {
        bad.insert(key.to_owned(), json!(why));
    }
    v
}

/// A request's parameters, checked.
#[derive(Debug, Default)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub limit: usize,
    pub cursor: Option<AuditCursor>,
    pub ndjson: bool,
}

/// An ISO 8601 / RFC 3339 date-time.
pub fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.trim()).ok().map(|d| d.with_timezone(&Utc))
}

/// Checks every parameter, collecting each bad one into `details.fields` (unknown ones
/// included, so a misspelt filter is not silently ignored).
pub fn parse_query(params: &[(String, String)]) -> Result<AuditQuery, ApiError> {
    let mut q = AuditQuery { limit: DEFAULT_LIMIT, ..AuditQuery::default() };
    let mut bad = Map::new();
    let id = |v: &str| (!v.is_empty() && v.len() <= MAX_ID_LEN).then(|| v.to_owned());
    let b = &mut bad;
    for (k, v) in params {
        match k.as_str() {
            "sessionId" => q.filter.session_id = check(id(v), b, k, "1 to 200 characters"),
            "userId" => q.filter.user_id = check(id(v), b, k, "1 to 200 characters"),
            "action" => q.filter.action = check(AuditAction::parse(v), b, k, "not a known audit action"),
            "from" => q.filter.from = check(parse_time(v), b, k, "an ISO 8601 date-time"),
            "to" => q.filter.to = check(parse_time(v), b, k, "an ISO 8601 date-time"),
            "limit" => {
                let n = v.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n));
                q.limit = check(n, b, k, "an integer from 1 to 1000").unwrap_or(DEFAULT_LIMIT);
            }
            "cursor" => q.cursor = check(decode_cursor(v), b, k, "not a cursor this API returned"),
            "format" => {
                let f = matches!(v.as_str(), "json" | "ndjson").then(|| v == "ndjson");
                q.ndjson = check(f, b, k, "json or ndjson").unwrap_or(false);
            }
            _ => {
                check(None::<()>, b, k, "unknown parameter");
            }
        }
    }
    if matches!((q.filter.from, q.filter.to), (Some(f), Some(t)) if f > t) {
        bad.insert("from".into(), json!("must not be after to"));
    }
    if bad.is_empty() {
        Ok(q)
    } else {
        Err(ApiError::new(ErrorCode::ValidationError).details(json!({ "fields": bad })))
    }
}

/// The filters as `audit_read` metadata records them.
pub fn filters_json(f: &AuditFilter) -> Value {
    let t = |d: &Option<DateTime<Utc>>| d.map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true));
    json!({
        "sessionId": f.session_id,
        "userId": f.user_id,
        "action": f.action.map(|a| a.as_str()),
        "from": t(&f.from),
        "to": t(&f.to),
    })
}

/// The `audit_read` entry of a read by `who`.
pub fn read_entry(who: &str, f: &AuditFilter, metadata: Value, ip: Option<String>, ua: Option<String>) -> AuditEntry {
    AuditEntry {
        session_id: f.session_id.clone().unwrap_or_default(),
        user_id: who.to_owned(),
        action: AuditAction::AuditRead,
        timestamp: now_ms(),
        metadata,
        ip_address: ip,
        user_agent: ua,
    }
}

#[utoipa::path(
    get,
    path = "/api/audit",
    operation_id = "readAudit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of entries, newest first; with `format=ndjson`, every matching entry, one JSON object per line.", content(
            (AuditPage = "application/json"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "VALIDATION_ERROR: a parameter is not valid or not known (each one named in `details.fields`).", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not an admin.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the store did not answer (nothing is read when the `audit_read` entry cannot be written).", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
/// The handler; `params` is None when the query string could not be read (never silently
/// dropped filters: that would widen the read).
pub async fn get(params: Option<Vec<(String, String)>>, ctx: Ctx) -> Response {
    let res = async {
        let who: Identity = ctx.caller()?;
        if !who.is_admin() {
            return Err(ApiError::new(ErrorCode::Forbidden).message("Only an admin may read the audit log."));
        }
        let params = params.ok_or_else(|| {
            ApiError::new(ErrorCode::ValidationError)
                .details(json!({ "fields": { "query": "not a valid query string" } }))
        })?;
        let q = parse_query(&params)?;
        let meta = ctx.meta();
        let metadata = json!({
            "filters": filters_json(&q.filter),
            "format": if q.ndjson { "ndjson" } else { "json" },
            "requestId": ctx.request_id,
        });
        let store = ctx.app.store.clone();
        if ctx.app.settings.log.audit_enabled {
            store.audit(read_entry(&who.user_id, &q.filter, metadata, meta.ip, meta.user_agent)).await?;
        }
        if q.ndjson {
            return Ok(Reply::Raw(ndjson_response(store, q.filter)));
        }
        let page = store.audit_page(&q.filter, q.cursor.as_ref(), q.limit).await?;
        ok(json!({
            "entries": page.entries.iter().map(entry_json).collect::<Vec<_>>(),
            "nextCursor": page.next.as_ref().map(encode_cursor),
        }))
    }
    .await;
    ctx.respond("audit", res)
}

/// Every entry matching `filter`, newest first, one JSON object per line, read from the
/// store `STREAM_BATCH` at a time by a task that stays at most `STREAM_AHEAD` batches ahead
/// of the client. A store failure mid-stream ends the body early (the status is sent).
fn ndjson_response(store: Arc<dyn Store>, filter: AuditFilter) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, StoreError>>(STREAM_AHEAD);
    tokio::spawn(async move {
        let mut after = None;
        loop {
            let page = match store.audit_page(&filter, after.as_ref(), STREAM_BATCH).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "audit stream ended early: store call failed");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut buf = Vec::with_capacity(page.entries.len() * 256);
            for e in &page.entries {
                let _ = serde_json::to_writer(&mut buf, &entry_json(e));
                buf.push(b'\n');
            }
            if !buf.is_empty() && tx.send(Ok(Bytes::from(buf))).await.is_err() {
                return; // The client went away.
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return,
            }
        }
    });
    let mut res = warp::reply::stream(Lines(rx)).into_response();
    res.headers_mut().insert("content-type", HeaderValue::from_static("application/x-ndjson"));
    res
}

/// The receiving end of an NDJSON stream as a body stream.
struct Lines(tokio::sync::mpsc::Receiver<Result<Bytes, StoreError>>);

impl futures_util::Stream for Lines {
    type Item = Result<Bytes, StoreError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
