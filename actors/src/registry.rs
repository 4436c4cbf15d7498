//! This node's seats: the registry (id -> buffer, actor, room) shared by the actors of the
//! node (`NodeCtx::conns`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ractor::{ActorId, ActorRef};

use crate::msg::ConnMsg;
use crate::outbound::Outbound;
use crate::ports::LeaveReason;
use crate::{ConnId, NodeId, RoomId};

/// One live connection of this node.
#[derive(Debug, Clone)]
pub struct ConnEntry {
    pub user_id: String,
    pub out: Outbound,
    pub actor: ActorRef<ConnMsg>,
    pub room: Option<RoomId>,
}

/// What became of a seat that is no longer here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// It left its room (or never joined one), for this reason.
    Left(LeaveReason),
    /// It moved to this node (a resume there): frames still arriving here go on there.
    Moved(NodeId),
}

/// How long the registry remembers a seat that went, and at most how many.
const GONE_FOR: Duration = Duration::from_secs(120);
const GONE_MAX: usize = 16_384;

#[derive(Default)]
struct Maps {
    by_id: HashMap<ConnId, ConnEntry>,
    by_actor: HashMap<ActorId, ConnId>,
    /// Seats that went recently, oldest first: so that the sweep does not take a seat that
    /// left during a NATS outage for one whose socket was lost, and so that frames for a
    /// seat that moved follow it.
    gone: VecDeque<(Instant, ConnId)>,
    gone_what: HashMap<ConnId, Gone>,
}

/// Node-wide index of live connections.
#[derive(Default)]
pub struct ConnRegistry {
    maps: Mutex<Maps>,
}

impl ConnRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: ConnId, user_id: String, out: Outbound, actor: ActorRef<ConnMsg>) {
        let mut m = self.lock();
        m.by_actor.insert(actor.get_id(), id.clone());
        m.by_id.insert(id, ConnEntry { user_id, out, actor, room: None });
    }

    pub fn get(&self, id: &str) -> Option<ConnEntry> {
        self.lock().by_id.get(id).cloned()
    }

    pub fn set_room(&self, id: &str, room: Option<RoomId>) {
        if let Some(e) = self.lock().by_id.get_mut(id) {
            e.room = room;
        }
    }

    pub fn remove(&self, id: &str) -> Option<ConnEntry> {
        let mut m = self.lock();
        let e = m.by_id.remove(id)?;
        m.by_actor.remove(&e.actor.get_id());
        Some(e)
    }

    pub(crate) fn remove_by_actor(&self, actor: ActorId) -> Option<(ConnId, ConnEntry)> {
        let mut m = self.lock();
        let id = m.by_actor.remove(&actor)?;
        let e = m.by_id.remove(&id)?;
        Some((id, e))
    }

    /// Remembers what became of seat `id` (for `GONE_FOR`, at most `GONE_MAX` seats).
    pub fn gone(&self, id: ConnId, what: Gone) {
        let mut m = self.lock();
        let now = Instant::now();
        while m.gone.front().is_some_and(|(t, _)| now.duration_since(*t) > GONE_FOR) || m.gone.len() >= GONE_MAX {
            if let Some((_, old)) = m.gone.pop_front() {
                m.gone_what.remove(&old);
            }
        }
        if m.gone_what.insert(id.clone(), what).is_none() {
            m.gone.push_back((now, id));
        }
    }

    /// What became of seat `id`, if it went recently and is not here again.
    pub fn what_became(&self, id: &str) -> Option<Gone> {
        let m = self.lock();
        if m.by_id.contains_key(id) {
            return None;
        }
        m.gone_what.get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every connection (for drain and admin).
    pub fn all(&self) -> Vec<(ConnId, ConnEntry)> {
        self.lock().by_id.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
