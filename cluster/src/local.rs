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

/// Member lists shorter than this grow by exactly one member (see `admit`).
const EXACT_GROWTH_BELOW: usize = 8;

/// The membership rule shared by every implementation: admit `member` into `members`,
/// replacing the same user's other connection (noted in `departed` as `replaced`), within
/// `capacity`. An entry with the same connection id is updated in place (a seat that went
/// away, came back, moved node, or changed its media), its `waiting` flag kept. Waiting
/// members (the waiting room) take no seat: a waiting member is always let in, and
/// `capacity` counts only the others. False if full.
pub fn admit(members: &mut Vec<Member>, member: Member, capacity: usize, departed: &mut Vec<Departure>) -> bool {
    if let Some(i) = members.iter().position(|m| m.conn_id == member.conn_id) {
        // Only `settle` changes `waiting`: an update in place (away, back, moved, media,
        // written by a node that may not have heard of an admission yet) keeps it.
        let mut member = member;
        member.waiting = members[i].waiting;
        members[i] = member;
        return true;
    }
    let stays = |m: &Member| m.user_id != member.user_id;
    if !member.waiting && members.iter().filter(|m| !m.waiting && stays(m)).count() >= capacity {
        return false;
    }
    for m in members.iter().filter(|m| !stays(m)) {
        departed.push(Departure { conn_id: m.conn_id.clone(), reason: LeaveReason::Replaced });
    }
    members.retain(stays);
    // Rooms are small and their member lists live as long as the room: a small list grows
    // by exactly one (a pair holds 2 members of about 140 bytes, not the 4 that doubling
    // gives); a large one (a busy waiting room) grows by doubling, without a copy per join.
    if members.len() < EXACT_GROWTH_BELOW {
        members.reserve_exact(1);
    }
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

    async fn settle_waiting(
        &self,
        room: &RoomId,
        conn: &str,
        admit: bool,
        capacity: usize,
    ) -> Result<RoomSnapshot, MembershipError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let snap = rooms.entry(room.clone()).or_default();
        let mut members = snap.members.clone();
        let mut departed = Vec::new();
        settle(&mut members, conn, admit, capacity, &mut departed)?;
        snap.members = members;
        snap.departed = departed;
        snap.revision += 1;
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

/// The waiting-room rule shared by every implementation (`Membership::settle_waiting`):
/// admits waiting member `conn` into a seat (if one is free within `capacity`), or removes it
/// with reason `Denied`.
pub fn settle(
    members: &mut Vec<Member>,
    conn: &str,
    admit: bool,
    capacity: usize,
    departed: &mut Vec<Departure>,
) -> Result<bool, MembershipError> {
    let Some(i) = members.iter().position(|m| *m.conn_id == *conn && m.waiting) else {
        return Err(MembershipError::NotWaiting);
    };
    if admit {
        if members.iter().filter(|m| !m.waiting).count() >= capacity {
            return Err(MembershipError::Full);
        }
        members[i].waiting = false;
    } else {
        let gone = members.remove(i);
        departed.push(Departure { conn_id: gone.conn_id, reason: LeaveReason::Denied });
    }
    Ok(true)
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
            media: None,
            waiting: false,
            joined_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn waiting_members_take_no_seat_and_are_settled_once() {
        let ms = LocalMembership::new();
        let room: RoomId = "w".into();
        let waiting = |c: &str, u: &str| Member { waiting: true, ..m(c, u) };
        ms.join(&room, m("h1", "host"), 2).await.unwrap();
        ms.join(&room, m("h2", "admin"), 2).await.unwrap();
        // A full room still lets a client wait.
        ms.join(&room, waiting("c1", "client"), 2).await.unwrap();
        assert_eq!(ms.settle_waiting(&room, "c1", true, 2).await, Err(MembershipError::Full));
        assert_eq!(ms.settle_waiting(&room, "h1", true, 2).await, Err(MembershipError::NotWaiting));
        // Nor does an update in place admit it: only settling does.
        let snap = ms.join(&room, m("c1", "client"), usize::MAX).await.unwrap();
        assert!(snap.members.iter().any(|m| &*m.conn_id == "c1" && m.waiting));
        ms.leave(&room, &["h2".into()], LeaveReason::Left).await.unwrap();
        let snap = ms.settle_waiting(&room, "c1", true, 2).await.unwrap();
        assert!(snap.members.iter().all(|m| !m.waiting));
        assert_eq!(ms.settle_waiting(&room, "c1", false, 2).await, Err(MembershipError::NotWaiting));
        // An admitted member's older entry (written by a node that has not heard yet) keeps it in.
        let snap = ms.join(&room, waiting("c1", "client"), usize::MAX).await.unwrap();
        assert!(snap.members.iter().all(|m| !m.waiting), "never back to waiting");
        // Denied: removed with its reason.
        ms.join(&room, waiting("c2", "other"), 2).await.unwrap();
        let snap = ms.settle_waiting(&room, "c2", false, 2).await.unwrap();
        assert_eq!(snap.reason("c2"), Some(LeaveReason::Denied));
        assert!(!snap.members.iter().any(|m| &*m.conn_id == "c2"));
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
