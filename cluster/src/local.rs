//! In-process membership and bus for a single node.
//!
//! Membership is a map behind one mutex, so every change is trivially atomic: capacity and
//! replace-on-rejoin cannot race. The bus has no other node to talk to: every member is
//! local, so routing never reaches `deliver` (a call is reported as `NoRoute`), and room
//! events have nobody to go to.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use signalgrid_actors::ports::{
    Bus, BusError, Delivery, Departure, LeaveReason, Member, Membership, MembershipError, RoomEvent, RoomSnapshot,
};
use signalgrid_actors::{ConnId, NodeId, RoomId};

/// Room membership held in this process.
#[derive(Default)]
pub struct LocalMembership {
    rooms: Mutex<HashMap<RoomId, RoomSnapshot>>,
}

impl LocalMembership {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The membership rule shared by every implementation: admit `member` into `members`,
/// replacing the same user's other connection (noted in `departed` as `replaced`), within
/// `capacity`. An entry with the same connection id is updated in place (a seat that went
/// away, came back, or moved node). False if full.
pub fn admit(members: &mut Vec<Member>, member: Member, capacity: usize, departed: &mut Vec<Departure>) -> bool {
    if let Some(m) = members.iter_mut().find(|m| m.conn_id == member.conn_id) {
        *m = member;
        return true;
    }
    let stays = |m: &Member| m.user_id != member.user_id;
    if members.iter().filter(|m| stays(m)).count() >= capacity {
        return false;
    }
    for m in members.iter().filter(|m| !stays(m)) {
        departed.push(Departure { conn_id: m.conn_id.clone(), reason: LeaveReason::Replaced });
    }
    members.retain(stays);
    members.push(member);
    true
}

#[async_trait]
impl Membership for LocalMembership {
    async fn join(&self, room: &RoomId, member: Member, capacity: usize) -> Result<RoomSnapshot, MembershipError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let snap = rooms.entry(room.clone()).or_default();
        let mut members = snap.members.clone();
        let mut departed = Vec::new();
        if !admit(&mut members, member, capacity, &mut departed) {
            return Err(MembershipError::Full);
        }
        snap.members = members;
        snap.departed = departed;
        snap.revision += 1;
        Ok(snap.clone())
    }

    async fn leave(
        &self,
        room: &RoomId,
        conns: &[ConnId],
        reason: LeaveReason,
    ) -> Result<RoomSnapshot, MembershipError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let Some(snap) = rooms.get_mut(room) else { return Ok(RoomSnapshot::default()) };
        let departed = departures(&snap.members, conns, reason);
        if !departed.is_empty() {
            snap.members.retain(|m| !conns.contains(&m.conn_id));
            snap.departed = departed;
            snap.revision += 1;
        }
        // An empty room keeps its entry, so its revision keeps counting up if it fills again.
        Ok(snap.clone())
    }

    async fn snapshot(&self, room: &RoomId) -> Result<RoomSnapshot, MembershipError> {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rooms.get(room).cloned().unwrap_or_default())
    }

    async fn rooms(&self) -> Result<Vec<RoomId>, MembershipError> {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rooms.iter().filter(|(_, s)| !s.members.is_empty()).map(|(k, _)| k.clone()).collect())
    }
}

/// The departures of removing `conns` (those present) from `members` for `reason`.
pub fn departures(members: &[Member], conns: &[ConnId], reason: LeaveReason) -> Vec<Departure> {
    members
        .iter()
        .filter(|m| conns.contains(&m.conn_id))
        .map(|m| Departure { conn_id: m.conn_id.clone(), reason })
        .collect()
}

/// The bus of a node that is alone.
#[derive(Debug, Default)]
pub struct LocalBus;

impl Bus for LocalBus {
    fn deliver(&self, node: &NodeId, _delivery: Delivery<'_>, _frame: String) -> Result<(), BusError> {
        Err(BusError::NoRoute(node.to_string()))
    }

    fn publish(&self, _room: &RoomId, _event: &RoomEvent) -> Result<(), BusError> {
        Ok(())
    }

    fn watch_room(&self, _room: &RoomId) {}

    fn unwatch_room(&self, _room: &RoomId) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn m(conn: &str, user: &str) -> Member {
        Member {
            conn_id: conn.into(),
            user_id: user.into(),
            user_name: user.into(),
            user_role: "client".into(),
            node_id: "n1".into(),
            away_since_ms: None,
            joined_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn capacity_replace_and_revisions() {
        let ms = LocalMembership::new();
        let room: RoomId = "r".into();
        assert_eq!(ms.join(&room, m("c1", "alice"), 2).await.unwrap().revision, 1);
        ms.join(&room, m("c2", "bob"), 2).await.unwrap();
        assert_eq!(ms.join(&room, m("c3", "carol"), 2).await, Err(MembershipError::Full));
        let out = ms.join(&room, m("c4", "alice"), 2).await.unwrap();
        let conns: Vec<&str> = out.members.iter().map(|m| &*m.conn_id).collect();
        assert_eq!(conns, ["c2", "c4"], "alice's new connection replaced her old one");
        assert_eq!(out.reason("c1"), Some(LeaveReason::Replaced));
        assert_eq!(out.revision, 3);
        let after = ms.leave(&room, &["c2".into()], LeaveReason::Left).await.unwrap();
        assert_eq!(after.members.len(), 1);
        assert_eq!(after.revision, 4);
        let same = ms.leave(&room, &["c2".into()], LeaveReason::Left).await.unwrap();
        assert_eq!(same.revision, 4, "leaving twice changes nothing");
        assert_eq!(ms.rooms().await.unwrap(), vec![room.clone()]);
    }

    #[tokio::test]
    async fn concurrent_joins_never_exceed_capacity() {
        let ms = Arc::new(LocalMembership::new());
        let room: RoomId = "r".into();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (ms, room) = (ms.clone(), room.clone());
                tokio::spawn(async move { ms.join(&room, m(&format!("c{i}"), &format!("u{i}")), 2).await.is_ok() })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 2);
    }
}
