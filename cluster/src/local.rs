//! In-process membership and bus for a single node.
//!
//! Membership is a map behind one mutex, so `join` is trivially atomic: capacity and
//! replace-on-rejoin cannot race. The bus has no other node to talk to: every member is
//! local, so routing never reaches it; a call means a bug and is reported as `NoRoute`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use signalgrid_actors::ports::{Bus, BusError, JoinOutcome, Member, Membership, MembershipError};
use signalgrid_actors::{ConnId, NodeId, RoomId};

/// Room membership held in this process.
#[derive(Default)]
pub struct LocalMembership {
    rooms: Mutex<HashMap<RoomId, Vec<Member>>>,
}

impl LocalMembership {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Membership for LocalMembership {
    async fn join(
        &self,
        room: &RoomId,
        member: Member,
        capacity: usize,
    ) -> Result<JoinOutcome, MembershipError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let members = rooms.entry(room.clone()).or_default();
        let same_user = members
            .iter()
            .position(|m| m.user_id == member.user_id && m.conn_id != member.conn_id);
        let already = members.iter().any(|m| m.conn_id == member.conn_id);
        let others = members.len() - usize::from(same_user.is_some()) - usize::from(already);
        if others >= capacity {
            return Err(MembershipError::Full);
        }
        let replaced = same_user.map(|i| members.remove(i));
        members.retain(|m| m.conn_id != member.conn_id);
        members.push(member);
        Ok(JoinOutcome {
            members: members.clone(),
            replaced,
        })
    }

    async fn leave(&self, room: &RoomId, conn: &ConnId) -> Result<Option<Member>, MembershipError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let Some(members) = rooms.get_mut(room) else {
            return Ok(None);
        };
        let removed = members
            .iter()
            .position(|m| &m.conn_id == conn)
            .map(|i| members.remove(i));
        if members.is_empty() {
            rooms.remove(room);
        }
        Ok(removed)
    }

    async fn members(&self, room: &RoomId) -> Result<Vec<Member>, MembershipError> {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rooms.get(room).cloned().unwrap_or_default())
    }
}

/// The bus of a node that is alone.
#[derive(Debug, Default)]
pub struct LocalBus;

impl Bus for LocalBus {
    fn deliver(&self, node: &NodeId, _to: &ConnId, _frame: String) -> Result<(), BusError> {
        Err(BusError::NoRoute(node.to_string()))
    }

    fn broadcast(
        &self,
        _room: &RoomId,
        _frame: String,
        _except: Option<&ConnId>,
    ) -> Result<(), BusError> {
        Ok(())
    }
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
        }
    }

    #[tokio::test]
    async fn capacity_and_replace() {
        let ms = LocalMembership::new();
        let room: RoomId = "r".into();
        ms.join(&room, m("c1", "alice"), 2).await.unwrap();
        ms.join(&room, m("c2", "bob"), 2).await.unwrap();
        assert_eq!(
            ms.join(&room, m("c3", "carol"), 2).await,
            Err(MembershipError::Full)
        );
        let out = ms.join(&room, m("c4", "alice"), 2).await.unwrap();
        assert_eq!(out.replaced.unwrap().conn_id.as_ref(), "c1");
        assert_eq!(out.members.len(), 2);
        assert_eq!(
            ms.leave(&room, &"c2".into())
                .await
                .unwrap()
                .unwrap()
                .user_id,
            "bob"
        );
        assert_eq!(ms.members(&room).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn concurrent_joins_never_exceed_capacity() {
        let ms = Arc::new(LocalMembership::new());
        let room: RoomId = "r".into();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (ms, room) = (ms.clone(), room.clone());
                tokio::spawn(async move {
                    ms.join(&room, m(&format!("c{i}"), &format!("u{i}")), 2)
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 2);
    }
}
