//! This node's seats: the registry (id -> buffer, actor, room) shared by the actors of the
//! node (`NodeCtx::conns`).

use std::collections::HashMap;
use std::sync::Mutex;

use ractor::{ActorId, ActorRef};

use crate::msg::ConnMsg;
use crate::outbound::Outbound;
use crate::{ConnId, RoomId};

/// One live connection of this node.
#[derive(Debug, Clone)]
pub struct ConnEntry {
    pub user_id: String,
    pub out: Outbound,
    pub actor: ActorRef<ConnMsg>,
    pub room: Option<RoomId>,
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<ConnId, ConnEntry>,
    by_actor: HashMap<ActorId, ConnId>,
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

