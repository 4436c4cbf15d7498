//! The shared membership (`KvMembership`) against a real nats-server's JetStream KV: emptied
//! rooms leave no key behind, a room can be joined again after that, and the dead-node sweep
//! changes (and reports) only the rooms that had a member on a dead node, and writes nothing
//! once its decision no longer holds.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;

use cluster_support::NatsServer;
#[allow(unused_imports)] // the cluster support module reaches the harness through the crate root
use common::*;
use futures_util::StreamExt;
use signalgrid_actors::ports::{LeaveReason, Member, Membership};
use signalgrid_actors::RoomId;
use signalgrid_cluster::nats::subjects::{room_token, Subjects};
use signalgrid_cluster::nats::{KvMembership, Verdict};

fn member(conn: &str, user: &str, node: &str) -> Member {
    Member {
        conn_id: conn.into(),
        user_id: user.into(),
        user_name: user.into(),
        user_role: "client".into(),
        node_id: node.into(),
        away_since_ms: None,
        media: None,
        waiting: false,
        joined_at_ms: 0,
    }
}

/// A bucket like the one nodes create (history 1), on a fresh server.
async fn bucket(nats: &NatsServer) -> async_nats::jetstream::kv::Store {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let name = Subjects::new("kvtest").rooms_bucket();
    js.create_key_value(async_nats::jetstream::kv::Config { bucket: name, history: 1, ..Default::default() })
        .await
        .unwrap()
}

async fn keys(kv: &async_nats::jetstream::kv::Store) -> Vec<String> {
    let mut out: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    out.sort();
    out
}

#[tokio::test]
async fn an_emptied_room_leaves_no_key_and_can_be_joined_again() {
    let nats = NatsServer::start();
    let kv = bucket(&nats).await;
    let ms = KvMembership::new(kv.clone());
    let room = RoomId::from("room-a");
    let one = ms.join(&room, member("c1", "u1", "n1"), 2).await.unwrap();
    let two = ms.join(&room, member("c2", "u2", "n1"), 2).await.unwrap();
    assert_eq!(keys(&kv).await, vec![room_token(&room)]);
    assert_eq!(ms.rooms().await.unwrap(), vec![room.clone()]);

    let half = ms.leave(&room, &["c1".into()], LeaveReason::Left).await.unwrap();
    let empty = ms.leave(&room, &["c2".into()], LeaveReason::Left).await.unwrap();
    assert!(empty.members.is_empty());
    // Revisions keep growing through the delete, so nodes apply it as the newest state.
    assert!(one.revision < two.revision && two.revision < half.revision && half.revision < empty.revision);
    assert_eq!(keys(&kv).await, Vec::<String>::new(), "no key for an empty room");
    assert!(ms.rooms().await.unwrap().is_empty());
    // The snapshot a leave returns says who left and why; a plain read does not.
    assert_eq!(empty.reason("c2"), Some(LeaveReason::Left), "{empty:?}");
    assert_eq!(half.reason("c1"), Some(LeaveReason::Left), "{half:?}");
    let read = ms.snapshot(&room).await.unwrap();
    assert_eq!((read.members.len(), read.revision), (0, empty.revision), "reads see the delete as an empty room");
    assert!(read.departed.is_empty(), "a plain read carries no departures: {read:?}");

    // Joined again: the compare-and-set goes on from the delete marker.
    let again = ms.join(&room, member("c3", "u1", "n2"), 2).await.unwrap();
    assert!(again.revision > empty.revision);
    assert_eq!(again.members.len(), 1);
    assert_eq!(keys(&kv).await, vec![room_token(&room)]);
}

#[tokio::test]
async fn the_sweep_changes_only_rooms_with_a_member_on_a_dead_node() {
    let nats = NatsServer::start();
    let kv = bucket(&nats).await;
    let ms = KvMembership::new(kv.clone());
    let (healthy, mixed, orphaned) = (RoomId::from("healthy"), RoomId::from("mixed"), RoomId::from("orphaned"));
    ms.join(&healthy, member("h1", "u1", "alive"), 2).await.unwrap();
    ms.join(&healthy, member("h2", "u2", "alive"), 2).await.unwrap();
    ms.join(&mixed, member("m1", "u1", "alive"), 2).await.unwrap();
    ms.join(&mixed, member("m2", "u2", "dead"), 2).await.unwrap();
    ms.join(&orphaned, member("o1", "u1", "dead"), 2).await.unwrap();
    let healthy_before = ms.snapshot(&healthy).await.unwrap();

    let dead = |_: &str, m: &Member| {
        if &*m.node_id == "alive" {
            Verdict::Keep
        } else {
            Verdict::Remove(LeaveReason::Timeout)
        }
    };
    // A sweep whose decision no longer holds (the NATS link broke since) writes nothing.
    let (none, stopped) = ms.sweep(dead, || false).await;
    assert!(none.is_empty() && stopped.is_some());
    assert_eq!(ms.snapshot(&mixed).await.unwrap().members.len(), 2);

    let (mut changed, error) = ms.sweep(dead, || true).await;
    assert!(error.is_none(), "{error:?}");
    changed.sort_by(|a, b| a.0.cmp(&b.0));
    let rooms: Vec<&str> = changed.iter().map(|(r, _)| &**r).collect();
    assert_eq!(rooms, vec!["mixed", "orphaned"], "only rooms that lost a member are reported");
    let mixed_now: Vec<&str> = changed[0].1.members.iter().map(|m| &*m.conn_id).collect();
    assert_eq!(mixed_now, vec!["m1"]);
    assert_eq!(changed[0].1.reason("m2"), Some(LeaveReason::Timeout), "the snapshot says why m2 left");
    assert!(changed[1].1.members.is_empty());
    assert_eq!(ms.snapshot(&healthy).await.unwrap(), healthy_before, "an untouched room is not rewritten");
    assert_eq!(keys(&kv).await.len(), 2, "the orphaned room's key is gone");

    assert!(ms.sweep(dead, || true).await.0.is_empty(), "a second sweep finds nothing");
}

/// A sweep's `Away(t)` marks a member away since `t` (Unix ms) and keeps it; a later sweep's
/// `Remove(Timeout)` removes it, and the snapshot says it left for `timeout`.
#[tokio::test]
async fn the_sweep_marks_a_member_away_then_removes_it_with_reason_timeout() {
    let nats = NatsServer::start();
    let kv = bucket(&nats).await;
    let ms = KvMembership::new(kv.clone());
    let room = RoomId::from("away-room");
    ms.join(&room, member("a1", "u1", "alive"), 2).await.unwrap();
    let before = ms.join(&room, member("d1", "u2", "dead"), 2).await.unwrap();
    const SINCE: i64 = 1_700_000_000_123;

    let away = |_: &str, m: &Member| {
        if &*m.node_id == "dead" && m.away_since_ms.is_none() {
            Verdict::Away(SINCE)
        } else {
            Verdict::Keep
        }
    };
    let (changed, error) = ms.sweep(away, || true).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(changed.len(), 1, "{changed:?}");
    let (r, snap) = &changed[0];
    assert_eq!(r, &room);
    assert!(snap.revision > before.revision);
    assert!(snap.departed.is_empty(), "marking away removes no one: {snap:?}");
    let seats: Vec<(&str, Option<i64>)> = snap.members.iter().map(|m| (&*m.conn_id, m.away_since_ms)).collect();
    assert_eq!(seats, vec![("a1", None), ("d1", Some(SINCE))]);
    let read = ms.snapshot(&room).await.unwrap();
    assert_eq!((read.members.clone(), read.revision), (snap.members.clone(), snap.revision), "the mark is stored");

    let expired = |_: &str, m: &Member| match m.away_since_ms {
        Some(t) if t == SINCE => Verdict::Remove(LeaveReason::Timeout),
        _ => Verdict::Keep,
    };
    let (changed, error) = ms.sweep(expired, || true).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(changed.len(), 1, "{changed:?}");
    let snap = &changed[0].1;
    let left: Vec<&str> = snap.members.iter().map(|m| &*m.conn_id).collect();
    assert_eq!(left, vec!["a1"]);
    assert_eq!(snap.reason("d1"), Some(LeaveReason::Timeout), "{snap:?}");
    assert_eq!(snap.reason("a1"), None);
    let read = ms.snapshot(&room).await.unwrap();
    assert_eq!((read.members.len(), read.revision), (1, snap.revision));
}
