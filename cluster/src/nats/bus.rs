//! The bus over core NATS: deliveries to another node's inbox, room events on the room's
//! subject. Publishing never blocks an actor: frames go through a bounded queue to one
//! publisher task (a full queue drops the frame: delivery is at most once, see `Bus`).
//! Room subscriptions are counted per room and made by a manager task.

use std::collections::HashMap;

use async_nats::Client;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use signalgrid_actors::node::Inbound;
use signalgrid_actors::ports::{Bus, BusError, Delivery, RoomEvent};
use signalgrid_actors::{NodeId, RoomId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics;
use super::subjects::Subjects;

/// Frames waiting for the publisher task.
const PUBLISH_QUEUE: usize = 65_536;

pub(crate) struct Outgoing {
    subject: String,
    payload: Bytes,
}

pub(crate) enum Watch {
    Start(RoomId),
    Stop(RoomId),
}

/// The `Bus` a clustered node is started with.
pub struct NatsBus {
    subjects: Subjects,
    out: mpsc::Sender<Outgoing>,
    watch: mpsc::UnboundedSender<Watch>,
}

impl NatsBus {
    pub(crate) fn new(subjects: Subjects) -> (NatsBus, mpsc::Receiver<Outgoing>, mpsc::UnboundedReceiver<Watch>) {
        let (out, out_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (watch, watch_rx) = mpsc::unbounded_channel();
        (NatsBus { subjects, out, watch }, out_rx, watch_rx)
    }

    fn send(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        self.out.try_send(Outgoing { subject, payload }).map_err(|e| {
            metrics::nats_error();
            BusError::Unavailable(format!("publish queue: {e}"))
        })
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
    fn deliver(&self, node: &NodeId, delivery: Delivery<'_>, frame: String) -> Result<(), BusError> {
        self.send(self.subjects.inbox(node), encode_delivery(delivery, &frame))?;
        metrics::forward_sent();
        Ok(())
    }

    fn publish(&self, room: &RoomId, event: &RoomEvent) -> Result<(), BusError> {
        let payload = serde_json::to_vec(event).map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.send(self.subjects.room(room), payload.into())
    }

    fn watch_room(&self, room: &RoomId) {
        let _ = self.watch.send(Watch::Start(room.clone()));
    }

    fn unwatch_room(&self, room: &RoomId) {
        let _ = self.watch.send(Watch::Stop(room.clone()));
    }
}

/// Publishes queued frames in order.
pub(crate) async fn publisher(client: Client, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(o) = rx.recv().await {
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
