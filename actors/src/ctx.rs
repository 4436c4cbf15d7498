//! The context every actor of a node shares (`NodeCtx`): its ports, settings, seat
//! registry, room index and the audit writer. Imports no actor, only the messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use chrono::Utc;
use ractor::ActorRef;
use serde_json::Value;

use crate::msg::{RoomMsg, RoomsMsg};
use crate::outbound::SeatLimits;
use crate::ports::Ports;
use crate::registry::ConnRegistry;
use crate::routing::RoomView;
use crate::rules::JoinPolicy;
use crate::seat::ResumeKeys;
use crate::session::{AuditAction, AuditEntry, ClientMeta};
use crate::{NodeId, RoomId};

/// Per-connection settings the actors need (the send budgets live at the edge: `budget`).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// WebSocket ping interval, told to clients in `connected` (ms).
    pub heartbeat_ms: u64,
    /// How long a seat waits for a resume once its socket is lost (ms; PROTOCOL.md
    /// section 6), told to clients in `connected`.
    pub resume_window_ms: u64,
    /// The bounds of each seat's buffer.
    pub seat: SeatLimits,
    /// Chat messages a seat may send per minute (sustained and at once); more get
    /// `RATE_LIMITED`.
    pub chat_per_minute: u32,
}

/// A running RoomActor and the routing view it publishes.
pub(crate) type IndexedRoom = (ActorRef<RoomMsg>, Arc<RoomView>);

/// State every actor of the node shares (read-mostly).
pub struct NodeCtx {
    pub node_id: NodeId,
    pub ports: Ports,
    pub policy: JoinPolicy,
    pub limits: ConnLimits,
    pub conns: ConnRegistry,
    pub resume_keys: ResumeKeys,
    pub(crate) audit_enabled: bool,
    /// Audit writes under way (shutdown waits for them).
    pub(crate) audits: Arc<AuditTracker>,
    pub(crate) draining: AtomicBool,
    pub(crate) rooms: OnceLock<ActorRef<RoomsMsg>>,
    /// Running RoomActors (and their routing views) by room, kept by the RoomSupervisor.
    pub(crate) room_index: RwLock<HashMap<RoomId, IndexedRoom>>,
    pub(crate) started: std::time::Instant,
    /// Webhook events this node emits (`webhook`).
    pub events: crate::webhook::Events,
}

impl NodeCtx {
    /// The RoomSupervisor (set once at start).
    pub fn rooms(&self) -> &ActorRef<RoomsMsg> {
        self.rooms.get().expect("room supervisor started before any connection")
    }

    /// Writes an audit entry in the background (when the audit log is enabled).
    pub fn audit(&self, session_id: &str, user_id: &str, action: AuditAction, metadata: Value, meta: &ClientMeta) {
        if !self.audit_enabled {
            return;
        }
        let entry = AuditEntry {
            session_id: session_id.to_owned(),
            user_id: user_id.to_owned(),
            action,
            timestamp: Utc::now(),
            metadata,
            ip_address: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        };
        self.audits.enqueue(entry, &self.ports.store);
    }

    /// Waits until every audit write started so far has finished (or `timeout` passed).
    pub async fn audits_settled(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.audits.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.audits.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The running RoomActor of a room, if it has members here.
    pub fn room(&self, room: &str) -> Option<ActorRef<RoomMsg>> {
        self.with_room(room, |r| r.map(|(actor, _)| actor.clone()))
    }

    /// Runs `f` on a room's actor and view, under the index's read lock (nothing cloned).
    pub(crate) fn with_room<R>(&self, room: &str, f: impl FnOnce(Option<&IndexedRoom>) -> R) -> R {
        f(self.room_index.read().unwrap_or_else(|p| p.into_inner()).get(room))
    }

    pub(crate) fn index_room(&self, room: RoomId, actor: ActorRef<RoomMsg>, view: Arc<RoomView>) {
        self.room_index.write().unwrap_or_else(|p| p.into_inner()).insert(room, (actor, view));
    }

    pub(crate) fn unindex_room(&self, room: &RoomId, actor: ractor::ActorId) {
        let mut idx = self.room_index.write().unwrap_or_else(|p| p.into_inner());
        if idx.get(room).is_some_and(|(a, _)| a.get_id() == actor) {
            idx.remove(room);
        }
    }

    /// A room with members here that also lists seat `conn` (of any node), if any: no
    /// store or NATS round trip.
    pub fn room_listing(&self, conn: &str) -> Option<RoomId> {
        let idx = self.room_index.read().unwrap_or_else(|p| p.into_inner());
        idx.iter().find(|(_, (_, view))| view.has(conn)).map(|(room, _)| room.clone())
    }

    /// Rooms with members on this node.
    pub fn local_rooms(&self) -> Vec<RoomId> {
        self.room_index.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }
}

/// Audit entries queued for the writer at most; past this, `audit` hands the entry to a
/// task that waits for room (nothing is dropped).
const AUDIT_QUEUE: usize = 8192;
/// Audit entries the writer hands to the store at once (the embedded store commits those
/// that reach it together in one transaction).
const AUDIT_BATCH: usize = 256;

/// The audit writer's queue, and the count of entries queued or being written (shutdown
/// waits for it to reach zero).
#[derive(Default)]
pub(crate) struct AuditTracker {
    pending: AtomicUsize,
    done: tokio::sync::Notify,
    /// Started with the first entry.
    queue: OnceLock<tokio::sync::mpsc::Sender<AuditEntry>>,
}

impl AuditTracker {
    fn enqueue(self: &Arc<Self>, entry: AuditEntry, store: &Arc<dyn crate::ports::Store>) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(AUDIT_QUEUE);
            tokio::spawn(audit_writer(rx, store.clone(), Arc::downgrade(self)));
            tx
        });
        match queue.try_send(entry) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(entry)) => {
                let (queue, tracker) = (queue.clone(), self.clone());
                tokio::spawn(async move {
                    if queue.send(entry).await.is_err() {
                        tracker.settle(1);
                    }
                });
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("audit entry not written: writer stopped");
                self.settle(1);
            }
        }
    }

    fn settle(&self, n: usize) {
        if self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            self.done.notify_waiters();
        }
    }
}

/// Polls every future to completion, concurrently, on the current task.
async fn all<F: std::future::Future + ?Sized>(mut futs: Vec<std::pin::Pin<Box<F>>>) {
    let mut left: Vec<bool> = vec![true; futs.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, live) in futs.iter_mut().zip(left.iter_mut()) {
            if *live {
                if f.as_mut().poll(cx).is_ready() {
                    *live = false;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await
}

/// The one audit writer: takes what is queued (up to a batch), hands it to the store at
/// once, and only then counts those entries as settled. Ends when the node is gone.
async fn audit_writer(
    mut rx: tokio::sync::mpsc::Receiver<AuditEntry>,
    store: Arc<dyn crate::ports::Store>,
    tracker: std::sync::Weak<AuditTracker>,
) {
    let mut batch = Vec::with_capacity(AUDIT_BATCH);
    while rx.recv_many(&mut batch, AUDIT_BATCH).await > 0 {
        let n = batch.len();
        let writes = batch
            .drain(..)
            .map(|entry| {
                let store = store.clone();
                Box::pin(async move {
                    if let Err(e) = store.audit(entry).await {
                        tracing::warn!(error = %e, "audit entry not written");
                    }
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            })
            .collect();
        all(writes).await;
        if let Some(t) = tracker.upgrade() {
            t.settle(n);
        }
    }
}
