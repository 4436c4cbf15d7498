//! Room membership in a JetStream key-value bucket: one key per room (its token), the value
//! the member list, the entry's revision the snapshot's revision. Every change is a
//! compare-and-set (`create` for a new key, `update` at the read revision, a delete at the
//! read revision when the last member leaves), retried on conflict, so capacity and
//! replace-on-rejoin hold across nodes with no race. Deleting emptied rooms keeps the
//! bucket's key list to the rooms that have members, which is what the sweep (dead nodes'
//! members, and this node's own members that are no longer connected) and the admin listing
//! walk.

use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use async_trait::async_trait;
use futures_util::StreamExt;
use signalgrid_actors::ports::{Departure, LeaveReason, Member, Membership, MembershipError, RoomSnapshot};
use signalgrid_actors::{ConnId, RoomId};

use super::metrics;
use super::subjects::{room_from_token, room_token};
use crate::local::{admit, departures, settle};

/// Attempts at one change before giving up (only under extreme contention).
const CAS_ATTEMPTS: usize = 64;

#[derive(Clone)]
pub struct KvMembership {
    kv: Store,
}

fn unavailable(e: impl std::fmt::Display) -> MembershipError {
    metrics::nats_error();
    MembershipError::Unavailable(e.to_string())
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Value {
    members: Vec<Member>,
    /// Who the change that wrote this value removed, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    departed: Vec<Departure>,
}

/// What a sweep does with one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Its socket is gone with its node: mark the seat away since this time (Unix ms).
    Away(i64),
    /// Remove it, for this reason.
    Remove(LeaveReason),
}

enum Outcome {
    Done(RoomSnapshot),
    Conflict,
}

impl KvMembership {
    pub fn new(kv: Store) -> KvMembership {
        KvMembership { kv }
    }

    /// The room's current value and the revision to compare against (None: no key yet).
    async fn read(&self, key: &str) -> Result<(Vec<Member>, Option<u64>), MembershipError> {
        match self.kv.entry(key).await.map_err(unavailable)? {
            None => Ok((Vec::new(), None)),
            Some(e) if e.operation != Operation::Put => Ok((Vec::new(), Some(e.revision))),
            Some(e) => {
                let v: Value = serde_json::from_slice(&e.value).unwrap_or_default();
                Ok((v.members, Some(e.revision)))
            }
        }
    }

    async fn write(
        &self,
        key: &str,
        members: Vec<Member>,
        departed: Vec<Departure>,
        rev: Option<u64>,
    ) -> Result<Outcome, MembershipError> {
        if members.is_empty() {
            if let Some(r) = rev {
                return self.delete(key, r, departed).await;
            }
        }
        let value = Value { members, departed };
        let bytes = serde_json::to_vec(&value).map_err(unavailable)?;
        let Value { members, departed } = value;
        let res = match rev {
            None => self.kv.create(key, bytes.into()).await.map_err(|e| match e.kind() {
                CreateErrorKind::AlreadyExists => None,
                _ => Some(unavailable(e)),
            }),
            Some(r) => self.kv.update(key, bytes.into(), r).await.map_err(|e| match e.kind() {
                UpdateErrorKind::WrongLastRevision => None,
                _ => Some(unavailable(e)),
            }),
        };
        match res {
            Ok(revision) => Ok(Outcome::Done(RoomSnapshot { revision, members, departed })),
            Err(None) => {
                metrics::cas_retry();
                Ok(Outcome::Conflict)
            }
            Err(Some(e)) => Err(e),
        }
    }

    /// The last member left: a delete marker at the read revision. Its own revision is read
    /// back (a join that came in between shows instead, which is newer still).
    async fn delete(&self, key: &str, rev: u64, departed: Vec<Departure>) -> Result<Outcome, MembershipError> {
        match self.kv.delete_expect_revision(key, Some(rev)).await {
            Ok(()) => {
                let (members, revision) = self.read(key).await?;
                Ok(Outcome::Done(RoomSnapshot { revision: revision.unwrap_or(rev), members, departed }))
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                metrics::cas_retry();
                Ok(Outcome::Conflict)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Read, change with `f` (None: nothing to change), compare-and-set; retried on conflict.
    async fn change(
        &self,
        room: &str,
        f: impl Fn(&mut Vec<Member>, &mut Vec<Departure>) -> Result<bool, MembershipError>,
    ) -> Result<RoomSnapshot, MembershipError> {
        let key = room_token(room);
        for _ in 0..CAS_ATTEMPTS {
            let (mut members, rev) = self.read(&key).await?;
            let mut departed = Vec::new();
            if !f(&mut members, &mut departed)? {
                return Ok(RoomSnapshot { revision: rev.unwrap_or(0), members, departed: Vec::new() });
            }
            if let Outcome::Done(snap) = self.write(&key, members, departed, rev).await? {
                return Ok(snap);
            }
        }
        Err(MembershipError::Unavailable("too much contention on the room".into()))
    }

    /// Applies `judge(room, member)` to every member: marks seats away or removes members;
    /// returns the rooms that changed, each with its new snapshot, and the error that stopped
    /// the walk, if any (rooms changed before it are still returned, so that they get
    /// announced).
    ///
    /// One read per room with members, and a write only where a verdict is not `Keep`.
    /// `judge` is asked again on the value each compare-and-set replaces, and `still_valid`
    /// right before it: when that says no, the walk stops with `MembershipError::Unavailable`
    /// and nothing more is written (a decision taken before a NATS outage is never applied
    /// after it).
    pub async fn sweep(
        &self,
        judge: impl Fn(&str, &Member) -> Verdict,
        still_valid: impl Fn() -> bool,
    ) -> (Vec<(RoomId, RoomSnapshot)>, Option<MembershipError>) {
        let mut changed = Vec::new();
        let mut keys = match self.kv.keys().await {
            Ok(k) => k,
            Err(e) => return (changed, Some(unavailable(e))),
        };
        while let Some(key) = keys.next().await {
            let key = match key {
                Ok(k) => k,
                Err(e) => return (changed, Some(unavailable(e))),
            };
            let Some(room) = room_from_token(&key) else { continue };
            let members = match self.read(&key).await {
                Ok((m, _)) => m,
                Err(e) => return (changed, Some(e)),
            };
            if members.iter().all(|m| judge(&room, m) == Verdict::Keep) {
                continue;
            }
            let res = self
                .change(&room, |ms, departed| {
                    if !still_valid() {
                        return Err(MembershipError::Unavailable(
                            "sweep abandoned: the NATS connection changed".into(),
                        ));
                    }
                    let mut changed = false;
                    ms.retain_mut(|m| match judge(&room, m) {
                        Verdict::Keep => true,
                        Verdict::Away(since) => {
                            m.away_since_ms = Some(since);
                            changed = true;
                            true
                        }
                        Verdict::Remove(reason) => {
                            departed.push(Departure { conn_id: m.conn_id.clone(), reason });
                            changed = true;
                            false
                        }
                    });
                    Ok(changed)
                })
                .await;
            match res {
                Ok(snap) => changed.push((RoomId::from(room), snap)),
                Err(e) => return (changed, Some(e)),
            }
        }
        (changed, None)
    }
}

#[async_trait]
impl Membership for KvMembership {
    async fn join(&self, room: &RoomId, member: Member, capacity: usize) -> Result<RoomSnapshot, MembershipError> {
        self.change(room, |ms, departed| {
            if admit(ms, member.clone(), capacity, departed) {
                Ok(true)
            } else {
                Err(MembershipError::Full)
            }
        })
        .await
    }

    async fn leave(
        &self,
        room: &RoomId,
        conns: &[ConnId],
        reason: LeaveReason,
    ) -> Result<RoomSnapshot, MembershipError> {
        self.change(room, |ms, departed| {
            *departed = departures(ms, conns, reason);
            ms.retain(|m| !conns.contains(&m.conn_id));
            Ok(!departed.is_empty())
        })
        .await
    }

    async fn settle_waiting(
        &self,
        room: &RoomId,
        conn: &str,
        admit: bool,
        capacity: usize,
    ) -> Result<RoomSnapshot, MembershipError> {
        self.change(room, |ms, departed| settle(ms, conn, admit, capacity, departed)).await
    }

    async fn snapshot(&self, room: &RoomId) -> Result<RoomSnapshot, MembershipError> {
        let (members, rev) = self.read(&room_token(room)).await?;
        Ok(RoomSnapshot { revision: rev.unwrap_or(0), members, departed: Vec::new() })
    }

    async fn rooms(&self) -> Result<Vec<RoomId>, MembershipError> {
        let mut keys = self.kv.keys().await.map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(unavailable)?;
            if let Some(room) = room_from_token(&k) {
                let (members, _) = self.read(&k).await?;
                if !members.is_empty() {
                    out.push(room.into());
                }
            }
        }
        Ok(out)
    }
}
