//! The bus over core NATS: deliveries to another node's inbox, room events on the room's
//! subject. Publishing never blocks an actor: frames go through a queue bounded in bytes to
//! one publisher task (a full queue drops the frame: delivery is at most once, see `Bus`).
//! While NATS is disconnected, relays are dropped at once and never published late; room
//! events wait in the queue (they carry state that the next one or the resync repairs).
//! Room subscriptions are counted per room and made by a manager task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Client;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use signalgrid_actors::node::Inbound;
use signalgrid_actors::ports::{
    BoxFuture, Bus, BusError, Delivery, HandOverError, HandOverRequest, HandedOver, RoomEvent,
};
use signalgrid_actors::seat::ResumeFailure;
use signalgrid_actors::{NodeId, RoomId};
use signalgrid_config::PublishQueueSettings;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::link::Link;
use super::metrics;
use super::subjects::Subjects;

/// Bytes a queued frame costs beyond its subject and payload (the queue entry itself), so
/// that a flood of tiny frames is bounded too.
const FRAME_OVERHEAD: usize = 128;

pub(crate) struct Outgoing {
    subject: String,
    payload: Bytes,
    /// A relay (an inbox delivery) rather than a room event: dropped when stale.
    relay: bool,
    queued_at: Instant,
}

impl Outgoing {
    /// What the frame counts against `PublishQueueSettings::max_bytes`, in bytes.
    fn cost(&self) -> usize {
        self.subject.len() + self.payload.len() + FRAME_OVERHEAD
    }
}

pub(crate) enum Watch {
    Start(RoomId),
    Stop(RoomId),
}

/// The queue's byte count, shared by the bus (adds) and the publisher (takes away).
struct Queued {
    bytes: AtomicUsize,
    max: usize,
}

impl Queued {
    /// Reserves `cost` bytes; false (and nothing reserved) when that would pass the bound.
    fn reserve(&self, cost: usize) -> bool {
        let ok = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| (b + cost <= self.max).then_some(b + cost))
            .is_ok();
        if ok {
            metrics::queued_bytes(cost as f64);
        }
        ok
    }

    fn release(&self, cost: usize) {
        self.bytes.fetch_sub(cost, Ordering::AcqRel);
        metrics::queued_bytes(-(cost as f64));
    }
}

/// The `Bus` a clustered node is started with.
pub struct NatsBus {
    client: Client,
    /// Liveness of the other nodes: a hand-over is not asked of a node known dead.
    peers: Arc<super::presence::Peers>,
    subjects: Subjects,
    out: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<Queued>,
    link: Arc<Link>,
    watch: mpsc::UnboundedSender<Watch>,
}

/// What the publisher task needs: the queue's receiving end and the rules for stale relays.
pub(crate) struct PublishQueue {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<Queued>,
    link: Arc<Link>,
    relay_max_age: Duration,
}

impl NatsBus {
    pub(crate) fn new(
        client: Client,
        subjects: Subjects,
        limits: &PublishQueueSettings,
        link: Arc<Link>,
        peers: Arc<super::presence::Peers>,
    ) -> (NatsBus, PublishQueue, mpsc::UnboundedReceiver<Watch>) {
        // Unbounded in count, bounded in bytes by `Queued` before anything is sent.
        let (out, rx) = mpsc::unbounded_channel();
        let (watch, watch_rx) = mpsc::unbounded_channel();
        let queued = Arc::new(Queued { bytes: AtomicUsize::new(0), max: limits.max_bytes });
        let queue = PublishQueue {
            rx,
            queued: queued.clone(),
            link: link.clone(),
            relay_max_age: Duration::from_millis(limits.relay_max_age_ms),
        };
        (NatsBus { client, peers, subjects, out, queued, link, watch }, queue, watch_rx)
    }

    /// Queues a frame. Errors when the queue is full (the frame is dropped and counted).
    fn send(&self, o: Outgoing) -> Result<(), BusError> {
        let cost = o.cost();
        if !self.queued.reserve(cost) {
            metrics::dropped(metrics::DROP_QUEUE_FULL);
            return Err(BusError::Unavailable(format!("publish queue full ({} bytes)", self.queued.max)));
        }
        if self.out.send(o).is_err() {
            self.queued.release(cost);
            metrics::nats_error();
            return Err(BusError::Unavailable("publisher stopped".into()));
        }
        Ok(())
    }

    /// Bytes waiting in the queue now.
    pub fn queued_bytes(&self) -> usize {
        self.queued.bytes.load(Ordering::Acquire)
    }
}

/// Inbox payload: three header lines (target connection, room, sender), then the frame.
/// Ids never contain a newline (they are generated or validated before any relay).
pub(crate) fn encode_delivery(d: Delivery<'_>, frame: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(d.to.len() + d.room.len() + d.from.len() + 3 + frame.len());
    for part in [d.to, d.room, d.from] {
        b.put_slice(part.as_bytes());
        b.put_u8(b'\n');
    }
    b.put_slice(frame.as_bytes());
    b.freeze()
}

pub(crate) fn decode_delivery(payload: &[u8]) -> Option<(Delivery<'_>, String)> {
    let mut rest = payload;
    let mut line = || {
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let part = std::str::from_utf8(&rest[..nl]).ok()?;
        rest = &rest[nl + 1..];
        Some(part)
    };
    let (to, room, from) = (line()?, line()?, line()?);
    let frame = String::from_utf8(rest.to_vec()).ok()?;
    Some((Delivery { room, from, to }, frame))
}

impl Bus for NatsBus {
    /// While NATS is disconnected the relay is dropped and counted (`Ok`: the loss is the
    /// documented outage behaviour, not a per-frame fault worth a log line each).
    fn deliver(&self, node: &NodeId, delivery: Delivery<'_>, frame: String) -> Result<(), BusError> {
        if !self.link.is_up() {
            metrics::dropped(metrics::DROP_DISCONNECTED);
            return Ok(());
        }
        let payload = encode_delivery(delivery, &frame);
        // A frame a seat's old node forwards after a resume is owed to that seat (the
        // resume promised nothing lost): never dropped as stale.
        let relay = delivery.from != delivery.to;
        self.send(Outgoing { subject: self.subjects.inbox(node), payload, relay, queued_at: Instant::now() })?;
        metrics::forward_sent();
        Ok(())
    }

    fn publish(&self, room: &RoomId, event: &RoomEvent) -> Result<(), BusError> {
        let payload = serde_json::to_vec(event).map_err(|e| BusError::Unavailable(e.to_string()))?;
        let subject = self.subjects.room(room);
        self.send(Outgoing { subject, payload: payload.into(), relay: false, queued_at: Instant::now() })
    }

    fn watch_room(&self, room: &RoomId) {
        let _ = self.watch.send(Watch::Start(room.clone()));
    }

    fn unwatch_room(&self, room: &RoomId) {
        let _ = self.watch.send(Watch::Stop(room.clone()));
    }

    /// A request on the seat's node's `seat` subject; no responder, a timeout or NATS away
    /// all mean `Unreachable` (the caller then looks in shared membership).
    fn hand_over(&self, node: &NodeId, req: HandOverRequest) -> BoxFuture<Result<HandedOver, HandOverError>> {
        let (client, subject) = (self.client.clone(), self.subjects.seat(node));
        let known_dead = self.peers.was_seen_dead(node);
        Box::pin(async move {
            if known_dead {
                return Err(HandOverError::Unreachable);
            }
            let body = serde_json::to_vec(&req).map_err(|_| HandOverError::Unreachable)?;
            let ask = client.request(subject, body.into());
            let msg = match tokio::time::timeout(HAND_OVER_TIMEOUT, ask).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "seat hand-over: no answer");
                    return Err(HandOverError::Unreachable);
                }
                Err(_) => return Err(HandOverError::Unreachable),
            };
            match serde_json::from_slice::<Result<HandedOver, ResumeFailure>>(&msg.payload) {
                Ok(Ok(h)) => Ok(h),
                Ok(Err(f)) => Err(HandOverError::Refused(f)),
                Err(e) => {
                    tracing::warn!(error = %e, "malformed seat hand-over answer");
                    Err(HandOverError::Unreachable)
                }
            }
        })
    }
}

/// Longest wait for a seat's node to answer a hand-over.
const HAND_OVER_TIMEOUT: Duration = Duration::from_millis(1500);

/// Answers hand-over requests for this node's seats (`Subjects::seat`).
pub(crate) async fn seat_responder(client: Client, subject: String, inbound: Inbound) {
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot subscribe to seat hand-overs");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else { continue };
        let (client, inbound) = (client.clone(), inbound.clone());
        // Each on its own task: one slow seat does not hold up the others.
        tokio::spawn(async move {
            let answer: Result<HandedOver, ResumeFailure> =
                match serde_json::from_slice::<HandOverRequest>(&msg.payload) {
                    Ok(req) => inbound.hand_over(req).await,
                    Err(_) => Err(ResumeFailure::Unknown),
                };
            let body = serde_json::to_vec(&answer).unwrap_or_default();
            if client.publish(reply, body.into()).await.is_err() {
                metrics::nats_error();
            }
        });
    }
}

/// Publishes queued frames in order. A relay is dropped instead when NATS is disconnected or
/// it waited longer than `relay_max_age` (it would arrive after the outage, out of date).
pub(crate) async fn publisher(client: Client, mut q: PublishQueue) {
    while let Some(o) = q.rx.recv().await {
        q.queued.release(o.cost());
        if o.relay && !q.link.is_up() {
            metrics::dropped(metrics::DROP_DISCONNECTED);
            continue;
        }
        if o.relay && o.queued_at.elapsed() > q.relay_max_age {
            metrics::dropped(metrics::DROP_STALE);
            continue;
        }
        if let Err(e) = client.publish(o.subject, o.payload).await {
            metrics::nats_error();
            tracing::warn!(error = %e, "NATS publish failed");
        }
    }
}

/// Hands deliveries on this node's inbox to local connections.
pub(crate) async fn inbox(client: Client, subject: String, inbound: Inbound) {
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot subscribe to the node inbox");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        metrics::forward_received();
        match decode_delivery(&msg.payload) {
            Some((delivery, frame)) => {
                if !inbound.deliver(delivery, frame) {
                    tracing::debug!(to = delivery.to, "delivery for a connection that is gone");
                }
            }
            None => tracing::warn!("malformed delivery on the inbox"),
        }
    }
}

/// Keeps one subscription per watched room, counting watchers (a restarted room actor
/// watches again before its failed predecessor is unwatched by the supervisor).
pub(crate) async fn room_watcher(
    client: Client,
    subjects: Subjects,
    inbound: Inbound,
    mut rx: mpsc::UnboundedReceiver<Watch>,
) {
    let mut rooms: HashMap<RoomId, (usize, JoinHandle<()>)> = HashMap::new();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Watch::Start(room) => {
                if let Some((n, _)) = rooms.get_mut(&room) {
                    *n += 1;
                    continue;
                }
                let sub = match client.subscribe(subjects.room(&room)).await {
                    Ok(s) => s,
                    Err(e) => {
                        metrics::nats_error();
                        tracing::warn!(room = %room, error = %e, "cannot subscribe to room events");
                        continue;
                    }
                };
                let (inbound, r) = (inbound.clone(), room.clone());
                let task = tokio::spawn(async move {
                    let mut sub = sub;
                    while let Some(msg) = sub.next().await {
                        match serde_json::from_slice::<RoomEvent>(&msg.payload) {
                            Ok(event) => inbound.room_event(&r, event),
                            Err(e) => tracing::warn!(room = %r, error = %e, "malformed room event"),
                        }
                    }
                });
                rooms.insert(room, (1, task));
            }
            Watch::Stop(room) => {
                if let Some((n, _)) = rooms.get_mut(&room) {
                    *n -= 1;
                    if *n == 0 {
                        if let Some((_, task)) = rooms.remove(&room) {
                            task.abort();
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_holds_at_most_its_bytes() {
        let q = Queued { bytes: AtomicUsize::new(0), max: 1_000 };
        assert!(q.reserve(600));
        assert!(!q.reserve(600), "past the bound");
        assert!(q.reserve(400), "exactly the bound");
        q.release(600);
        assert!(q.reserve(500));
        assert_eq!(q.bytes.load(Ordering::Acquire), 900);
    }

    #[test]
    fn deliveries_round_trip() {
        let d = Delivery { room: "room-1", from: "def", to: "abc" };
        let p = encode_delivery(d, "{\"event\":\"x\",\"data\":\"a\\nb\"}");
        let (back, frame) = decode_delivery(&p).unwrap();
        assert_eq!(back, d);
        assert_eq!(frame, "{\"event\":\"x\",\"data\":\"a\\nb\"}");
        assert!(decode_delivery(b"no newline").is_none());
        assert!(decode_delivery(b"to\nroom-only").is_none());
    }
}
