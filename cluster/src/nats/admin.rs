//! Admin over NATS request/reply: the responders every node runs, and the client the
//! `signalgrid admin` command uses.
//!
//! | request | answered by | reply |
//! |---|---|---|
//! | `admin.nodes` | every node | its `NodeInfo` (the client gathers replies for a moment) |
//! | `admin.rooms` | one node (queue group) | rooms with members, with their member counts |
//! | `admin.room` (body: room id) | one node | the room's members and their nodes |
//! | `admin.kick` (body: connection id) | the node holding it | `{"kicked": true, "node": …}` |
//! | `admin.close` (body: room id) | one node | `{"closed": true}`; every member is disconnected |
//! | `admin.node.<id>.drain` | that node | `{"draining": true}`; the node drains and exits |

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Subscriber};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use signalgrid_actors::node::Inbound;
use signalgrid_actors::ports::{Bus, Member, Membership, RoomEvent};
use tokio::sync::Notify;

use super::bus::NatsBus;
use super::membership::KvMembership;
use super::presence::NodeInfo;
use super::subjects::Subjects;
use super::{connect_options, ClusterError};

const QUEUE: &str = "signalgrid-admin";

/// A room as `admin rooms` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoomSummary {
    pub room_id: String,
    pub members: usize,
}

/// What the responders need.
pub(crate) struct Responders {
    pub client: Client,
    pub subjects: Subjects,
    pub inbound: Inbound,
    pub membership: KvMembership,
    pub bus: Arc<NatsBus>,
    pub me: Arc<dyn Fn() -> NodeInfo + Send + Sync>,
    pub drain: Arc<Notify>,
}

async fn sub(client: &Client, subject: String, queue: bool) -> Option<Subscriber> {
    let res = if queue {
        client.queue_subscribe(subject.clone(), QUEUE.into()).await
    } else {
        client.subscribe(subject.clone()).await
    };
    match res {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot subscribe to admin requests");
            None
        }
    }
}

impl Responders {
    async fn answer(&self, verb: &str, body: &[u8]) -> Option<Value> {
        let arg = String::from_utf8_lossy(body).trim().to_owned();
        match verb {
            "nodes" => Some(json!((self.me)())),
            "rooms" => {
                let rooms = self.membership.rooms().await.ok()?;
                let mut out = Vec::new();
                for r in rooms {
                    let n = self.membership.snapshot(&r).await.map(|s| s.members.len()).unwrap_or(0);
                    out.push(RoomSummary { room_id: r.to_string(), members: n });
                }
                Some(json!(out))
            }
            "room" => Some(match self.membership.snapshot(&arg.as_str().into()).await {
                Ok(s) => json!({ "roomId": arg, "members": s.members, "revision": s.revision }),
                Err(e) => json!({ "error": e.to_string() }),
            }),
            "kick" => {
                self.inbound.kick(&arg).then(|| json!({ "kicked": true, "node": &*self.inbound.node_id().to_string() }))
            }
            "close" => {
                let room = arg.as_str().into();
                let _ = self.bus.publish(&room, &RoomEvent::Close);
                self.inbound.room_event(&arg, RoomEvent::Close);
                Some(json!({ "closed": true, "roomId": arg }))
            }
            "drain" => {
                self.drain.notify_one();
                Some(json!({ "draining": true, "node": &*self.inbound.node_id().to_string() }))
            }
            _ => None,
        }
    }

    pub async fn run(self) {
        let me = self.inbound.node_id().to_string();
        let subs = [
            ("nodes", sub(&self.client, self.subjects.admin("nodes"), false).await),
            ("rooms", sub(&self.client, self.subjects.admin("rooms"), true).await),
            ("room", sub(&self.client, self.subjects.admin("room"), true).await),
            ("kick", sub(&self.client, self.subjects.admin("kick"), false).await),
            ("close", sub(&self.client, self.subjects.admin("close"), true).await),
            ("drain", sub(&self.client, self.subjects.admin_node(&me, "drain"), false).await),
        ];
        let streams = subs.into_iter().filter_map(|(verb, s)| s.map(|s| s.map(move |m| (verb, m))));
        let mut all = futures_util::stream::select_all(streams);
        while let Some((verb, msg)) = all.next().await {
            let Some(reply) = msg.reply.clone() else { continue };
            if let Some(v) = self.answer(verb, &msg.payload).await {
                let _ = self.client.publish(reply, v.to_string().into()).await;
            }
        }
    }
}

/// The operator's side: `signalgrid admin …`.
pub struct AdminClient {
    client: Client,
    subjects: Subjects,
}

/// How long a single-answer request waits.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `nodes` gathers replies.
const GATHER: Duration = Duration::from_millis(700);

impl AdminClient {
    pub async fn connect(settings: &signalgrid_config::ClusterSettings) -> Result<AdminClient, ClusterError> {
        let (opts, addrs) = connect_options(settings, "signalgrid-admin").await?;
        let client = opts.connect(addrs).await.map_err(|e| ClusterError::Connect(e.to_string()))?;
        Ok(AdminClient { client, subjects: Subjects::new(&settings.name) })
    }

    async fn request(&self, subject: String, body: &str) -> Result<Value, ClusterError> {
        let fut = self.client.request(subject, body.to_owned().into());
        let msg = tokio::time::timeout(REQUEST_TIMEOUT, fut).await.map_err(|_| ClusterError::NoAnswer)?.map_err(
            |e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders | async_nats::RequestErrorKind::TimedOut => {
                    ClusterError::NoAnswer
                }
                _ => ClusterError::Connect(e.to_string()),
            },
        )?;
        serde_json::from_slice(&msg.payload).map_err(|e| ClusterError::Connect(e.to_string()))
    }

    /// Every node's status (replies gathered for a moment).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.map_err(|e| ClusterError::Connect(e.to_string()))?;
        self.client
            .publish_with_reply(self.subjects.admin("nodes"), inbox, "".into())
            .await
            .map_err(|e| ClusterError::Connect(e.to_string()))?;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + GATHER;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
            if let Ok(info) = serde_json::from_slice::<NodeInfo>(&msg.payload) {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(out)
    }

    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, ClusterError> {
        let v = self.request(self.subjects.admin("rooms"), "").await?;
        serde_json::from_value(v).map_err(|e| ClusterError::Connect(e.to_string()))
    }

    /// A room's members.
    pub async fn room(&self, room: &str) -> Result<Vec<Member>, ClusterError> {
        let v = self.request(self.subjects.admin("room"), room).await?;
        if let Some(e) = v.get("error") {
            return Err(ClusterError::Connect(e.to_string()));
        }
        serde_json::from_value(v["members"].clone()).map_err(|e| ClusterError::Connect(e.to_string()))
    }

    /// Disconnects a connection; the answer names its node. `NoAnswer` if no node has it.
    pub async fn kick(&self, conn: &str) -> Result<Value, ClusterError> {
        self.request(self.subjects.admin("kick"), conn).await
    }

    pub async fn close(&self, room: &str) -> Result<Value, ClusterError> {
        self.request(self.subjects.admin("close"), room).await
    }

    pub async fn drain(&self, node: &str) -> Result<Value, ClusterError> {
        self.request(self.subjects.admin_node(node, "drain"), "").await
    }
}
