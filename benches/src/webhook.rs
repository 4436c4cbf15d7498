//! The generator's webhook receiver (`--webhook-listen`): a small HTTP/1.1 server on
//! loopback that the nodes `POST` their events to (PROTOCOL.md section 7; the nodes'
//! `webhooks.urls` point at it). It answers 204, or 503 while an outage is on, and records,
//! per event, when each attempt arrived and which one it acknowledged. The report compares
//! the arrival of each event's acknowledged attempt with the event's `createdAt` (and, for
//! `participant.joined` / `participant.left`, with the generator's own join and leave),
//! checks the order per room, and times the delivery of what waited through an outage.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::stats::Latency;

/// One acknowledged event, as it arrived.
#[derive(Debug, Clone)]
struct Acked {
    kind: String,
    room: String,
    socket: Option<String>,
    created: DateTime<Utc>,
    arrived: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created_at: DateTime<Utc>,
    #[serde(default)]
    data: EventData,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EventData {
    #[serde(default)]
    room_id: String,
    #[serde(default)]
    socket_id: Option<String>,
}

#[derive(Default)]
struct Log {
    /// Acknowledged events in the order their acknowledged attempt arrived.
    acked: Vec<Acked>,
    /// Ids acknowledged so far, with how many times.
    acks: HashMap<String, u32>,
    /// `room.finished` acknowledged, per room.
    finished: HashMap<String, DateTime<Utc>>,
}

struct Shared {
    outage: AtomicBool,
    attempts: AtomicU64,
    refused: AtomicU64,
    unreadable: AtomicU64,
    log: Mutex<Log>,
    changed: Notify,
}

/// The running receiver; stopped on drop.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    returned: Mutex<Option<DateTime<Utc>>>,
}

impl Receiver {
    /// Listens on `addr` (loopback only); `outage`: answer 503 until [`Receiver::end_outage`].
    pub async fn start(addr: SocketAddr, outage: bool) -> Result<Receiver, String> {
        if !addr.ip().is_loopback() {
            return Err(format!("--webhook-listen {addr}: only loopback addresses are accepted"));
        }
        let listener = TcpListener::bind(addr).await.map_err(|e| format!("--webhook-listen {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            outage: AtomicBool::new(outage),
            attempts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            unreadable: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
            changed: Notify::new(),
        });
        let s = shared.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        Ok(Receiver { addr, shared, server, returned: Mutex::new(None) })
    }

    /// The receiver comes back: every later attempt is answered 204.
    pub fn end_outage(&self) {
        *self.returned.lock().unwrap_or_else(|p| p.into_inner()) = Some(Utc::now());
        self.shared.outage.store(false, Ordering::Release);
    }

    /// Waits until `room.finished` of every room in `rooms` was acknowledged (so, rooms
    /// being ordered, every earlier event of those rooms too), at most `limit`. True if all
    /// came.
    pub async fn until_finished(&self, rooms: &[String], limit: std::time::Duration) -> bool {
        let all = async {
            loop {
                let changed = self.shared.changed.notified();
                {
                    let log = self.shared.log.lock().unwrap_or_else(|p| p.into_inner());
                    if rooms.iter().all(|r| log.finished.contains_key(r)) {
                        return;
                    }
                }
                changed.await;
            }
        };
        tokio::time::timeout(limit, all).await.is_ok()
    }

    /// The report; `actions` are the generator's join and leave times per socket id.
    pub fn report(&self, actions: &Actions, rooms: &[String]) -> WebhookReport {
        let log = self.shared.log.lock().unwrap_or_else(|p| p.into_inner());
        let returned = *self.returned.lock().unwrap_or_else(|p| p.into_inner());
        let ns = |a: DateTime<Utc>, b: DateTime<Utc>| (a - b).num_microseconds().unwrap_or(0).max(0) as u64 * 1_000;
        let mut by_type = BTreeMap::new();
        let (mut to_delivery, mut from_action) = (Vec::new(), Vec::new());
        for e in &log.acked {
            *by_type.entry(e.kind.clone()).or_insert(0u64) += 1;
            // Only events that did not wait through an outage measure the delivery path.
            if returned.is_none_or(|r| e.created >= r) {
                to_delivery.push(ns(e.arrived, e.created));
                let acted = match (e.kind.as_str(), &e.socket) {
                    ("participant.joined", Some(s)) => actions.joined.get(s),
                    ("participant.left", Some(s)) => actions.left.get(s),
                    _ => None,
                };
                if let Some(t) = acted {
                    from_action.push(ns(e.arrived, *t));
                }
            }
        }
        let after_return = returned.map(|r| {
            let waited: Vec<&Acked> = log.acked.iter().filter(|e| e.created < r).collect();
            let last = waited.iter().map(|e| e.arrived).max();
            OutageReport {
                waited_events: waited.len() as u64,
                waited_rooms: waited.iter().map(|e| e.room.as_str()).collect::<std::collections::HashSet<_>>().len()
                    as u64,
                all_delivered_secs: last.map(|l| ns(l, r) as f64 / 1e9),
            }
        });
        let order = order_check(&log.acked);
        WebhookReport {
            listen: self.addr.to_string(),
            attempts: self.shared.attempts.load(Ordering::Relaxed),
            refused_during_outage: self.shared.refused.load(Ordering::Relaxed),
            unreadable: self.shared.unreadable.load(Ordering::Relaxed),
            delivered: log.acks.len() as u64,
            duplicates: log.acks.values().map(|n| u64::from(n - 1)).sum(),
            by_type,
            rooms_expected: rooms.len() as u64,
            rooms_finished: rooms.iter().filter(|r| log.finished.contains_key(*r)).count() as u64,
            order_violations: order.0,
            created_at_inversions: order.1,
            order_violation_examples: order.2,
            event_to_delivery: Latency::of_values(&to_delivery),
            action_to_delivery: Latency::of_values(&from_action),
            outage: after_return,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(s: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |code: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = code;
        Ok(r)
    };
    s.attempts.fetch_add(1, Ordering::Relaxed);
    let Ok(body) = req.into_body().collect().await else {
        s.unreadable.fetch_add(1, Ordering::Relaxed);
        return reply(StatusCode::BAD_REQUEST);
    };
    let arrived = Utc::now();
    if s.outage.load(Ordering::Acquire) {
        s.refused.fetch_add(1, Ordering::Relaxed);
        return reply(StatusCode::SERVICE_UNAVAILABLE);
    }
    let Ok(e) = serde_json::from_slice::<Event>(&body.to_bytes()) else {
        s.unreadable.fetch_add(1, Ordering::Relaxed);
        return reply(StatusCode::BAD_REQUEST);
    };
    {
        let mut log = s.log.lock().unwrap_or_else(|p| p.into_inner());
        let n = log.acks.entry(e.id.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            if e.kind == "room.finished" {
                log.finished.insert(e.data.room_id.clone(), arrived);
            }
            log.acked.push(Acked {
                kind: e.kind,
                room: e.data.room_id,
                socket: e.data.socket_id,
                created: e.created_at,
                arrived,
            });
        }
    }
    s.changed.notify_waiters();
    reply(StatusCode::NO_CONTENT)
}

/// Rooms out of order shown in the report, at most.
const MAX_EXAMPLES: usize = 5;

/// Per room, in the order acknowledged: (events out of the order the contract promises:
/// `room.started` not first, anything after `room.finished`, a socket's `participant.left`
/// before its `participant.joined` or a second `participant.joined`; events whose
/// `createdAt` is earlier than the one acknowledged before them). The second is no breach:
/// a room's order is the order its events entered the store's queue, and two nodes may
/// stamp events of one room in the same instant and queue them the other way round.
fn order_check(acked: &[Acked]) -> (u64, u64, Vec<String>) {
    let mut rooms: HashMap<&str, Vec<&Acked>> = HashMap::new();
    for e in acked {
        rooms.entry(e.room.as_str()).or_default().push(e);
    }
    let (mut bad, mut inversions, mut examples) = (0, 0, Vec::new());
    for events in rooms.values() {
        let before = bad;
        let mut joined = std::collections::HashSet::new();
        for (i, e) in events.iter().enumerate() {
            let ok = match e.kind.as_str() {
                "room.started" => i == 0,
                "participant.joined" => e.socket.as_ref().is_some_and(|s| joined.insert(s.clone())),
                "participant.left" => e.socket.as_ref().is_some_and(|s| joined.contains(s)),
                _ => true,
            } && (i == 0 || events[i - 1].kind != "room.finished");
            if !ok {
                bad += 1;
            }
            if i > 0 && events[i - 1].created > e.created {
                inversions += 1;
            }
        }
        if bad > before && examples.len() < MAX_EXAMPLES {
            let seq: Vec<String> = events
                .iter()
                .map(|e| {
                    format!("{} {} {}", e.kind, e.socket.as_deref().unwrap_or("-"), e.created.format("%H:%M:%S%.3f"))
                })
                .collect();
            examples.push(format!("{}: {}", events[0].room, seq.join(", ")));
        }
    }
    (bad, inversions, examples)
}

/// The generator's own action times, per socket id (wall clock, like `createdAt`).
#[derive(Default)]
pub struct Actions {
    /// When `room-joined` came back.
    pub joined: HashMap<String, DateTime<Utc>>,
    /// When `leave-room` was sent.
    pub left: HashMap<String, DateTime<Utc>>,
}

/// What the receiver saw.
#[derive(Debug, Serialize)]
pub struct WebhookReport {
    pub listen: String,
    /// Requests received, acknowledged or not.
    pub attempts: u64,
    /// Attempts answered 503 while the outage was on.
    pub refused_during_outage: u64,
    /// Requests whose body was not an event.
    pub unreadable: u64,
    /// Distinct event ids acknowledged.
    pub delivered: u64,
    /// Acknowledgements of an id past its first (a retry of an attempt that was answered).
    pub duplicates: u64,
    pub by_type: BTreeMap<String, u64>,
    /// Rooms the generator ran a call in, and those whose `room.finished` arrived.
    pub rooms_expected: u64,
    pub rooms_finished: u64,
    /// See `order_check`: 0 when every room's events came in the contract's order.
    pub order_violations: u64,
    /// See `order_check`: consecutive events of a room whose `createdAt` goes back (two
    /// nodes stamping in the same instant); not a breach.
    pub created_at_inversions: u64,
    /// Up to 5 rooms with an order violation: each event as `type socketId createdAt`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order_violation_examples: Vec<String>,
    /// From `createdAt` to the acknowledged attempt's arrival (events created after any
    /// outage).
    pub event_to_delivery: Latency,
    /// From the generator's join (`room-joined` received) or leave (`leave-room` sent) to the
    /// arrival of its `participant.joined` / `participant.left`.
    pub action_to_delivery: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage: Option<OutageReport>,
}

/// Events that waited through the outage (created before the receiver came back).
#[derive(Debug, Serialize)]
pub struct OutageReport {
    pub waited_events: u64,
    pub waited_rooms: u64,
    /// From the receiver's return to the last of them acknowledged, in seconds.
    pub all_delivered_secs: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, room: &str, socket: Option<&str>, created_ms: i64) -> Acked {
        let t = DateTime::from_timestamp_millis(created_ms).unwrap();
        Acked { kind: kind.into(), room: room.into(), socket: socket.map(Into::into), created: t, arrived: t }
    }

    #[test]
    fn the_contracts_order_is_checked_per_room_and_a_created_at_tie_broken_the_other_way_is_not_a_breach() {
        let good = [
            ev("room.started", "r1", None, 1),
            ev("participant.joined", "r1", Some("a"), 2),
            ev("room.started", "r2", None, 2),
            ev("participant.joined", "r1", Some("b"), 4),
            ev("participant.left", "r1", Some("b"), 6),
            ev("participant.left", "r1", Some("a"), 5),
            ev("room.finished", "r1", None, 7),
        ];
        assert_eq!(order_check(&good), (0, 1, vec![]));
        let bad = [
            ev("participant.joined", "r1", Some("a"), 1),
            ev("room.started", "r1", None, 2),
            ev("participant.left", "r1", Some("b"), 3),
            ev("room.finished", "r1", None, 4),
            ev("participant.left", "r1", Some("a"), 5),
        ];
        let (n, inversions, examples) = order_check(&bad);
        assert_eq!((n, inversions, examples.len()), (3, 0, 1));
    }
}
