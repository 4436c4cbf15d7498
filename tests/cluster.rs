//! Two or three nodes over a real nats-server: participants on different nodes meet as if on
//! one node; capacity and replace-on-rejoin hold across nodes.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;

use std::path::PathBuf;
use std::sync::Arc;

use cluster_support::*;
use common::*;
use serde_json::json;
use signalgrid_actors::identity::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_across_two_nodes_carries_every_event_both_ways_in_order() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "c1", &data, "node-a").await;
    let n2 = node(&nats.url(), "c1", &data, "node-b").await;
    let (session, room) = n1.call().await;

    let mut a = WsClient::connect(&n1, &client_token()).await;
    let mut b = WsClient::connect(&n2, &psy_token()).await;
    assert_eq!((a.node_id.as_str(), b.node_id.as_str()), ("node-a", "node-b"));
    a.join(&room).await;
    let joined = b.join(&room).await;
    let ids: Vec<&str> =
        joined["participants"].as_array().unwrap().iter().map(|p| p["socketId"].as_str().unwrap()).collect();
    assert!(ids.contains(&a.socket_id.as_str()) && ids.contains(&b.socket_id.as_str()), "{joined}");
    assert_eq!(a.next_event("user-joined").await["socketId"], b.socket_id.as_str());

    // offer / answer / candidates, both directions, payload verbatim, order per sender.
    b.send("offer", json!({"offer": {"type": "offer", "sdp": "v=0", "x": [1]}, "to": a.socket_id})).await;
    let o = a.next_event("offer").await;
    assert_eq!((o["from"].as_str(), &o["offer"]["x"][0]), (Some(b.socket_id.as_str()), &json!(1)));
    a.send("answer", json!({"answer": {"type": "answer", "sdp": "v=0"}, "to": b.socket_id})).await;
    assert_eq!(b.next_event("answer").await["from"], a.socket_id.as_str());
    for seq in 0..50 {
        a.send("ice-candidate", json!({"candidate": {"seq": seq}, "to": b.socket_id})).await;
        b.send("ice-candidate", json!({"candidate": {"seq": seq}, "to": a.socket_id})).await;
    }
    for seq in 0..50 {
        assert_eq!(b.next_event("ice-candidate").await["candidate"]["seq"], seq);
        assert_eq!(a.next_event("ice-candidate").await["candidate"]["seq"], seq);
    }
    a.send("ice-candidate", json!({"candidate": null, "to": b.socket_id})).await;
    assert!(b.next_event("ice-candidate").await["candidate"].is_null());

    // leave and rejoin, then call-ended reaches both nodes, and the record is complete.
    b.send("leave-room", json!({"roomId": room})).await;
    assert_eq!(a.next_event("user-left").await["socketId"], b.socket_id.as_str());
    b.join(&room).await;
    a.next_event("user-joined").await;
    b.send("call-ended", json!({"roomId": room})).await;
    for c in [&mut a, &mut b] {
        let e = c.next_event("call-ended").await;
        assert_eq!(e["endedBy"], "psy-1");
    }
    let s: serde_json::Value =
        n2.get(&format!("/api/sessions/{session}"), Some(&admin())).send().await.unwrap().json().await.unwrap();
    assert_eq!(s["status"], "Completed");

    // Closing a socket on one node is a leave on the other.
    b.close().await;
    assert_eq!(a.next_event("user-left").await["userId"], "psy-1");

    let metrics = n1.get("/metrics", None).send().await.unwrap().text().await.unwrap();
    for name in ["signalgrid_cluster_forwards_sent_total", "signalgrid_cluster_forwards_received_total"] {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_to_nats_with_user_and_password() {
    let nats = NatsServer::start_with_auth("sg", "s3cret-pass");
    let data = Arc::new(tempfile::tempdir().unwrap());
    let url = nats.url();
    let with = |pass: &'static str, id: &'static str| {
        let url = url.clone();
        move |s: &mut signalgrid::Settings| {
            s.cluster.nats_url = Some(url);
            s.cluster.name = "auth".into();
            s.cluster.nats_user = Some("sg".into());
            s.cluster.nats_password = Some(pass.into());
            s.node_id = Some(id.into());
        }
    };
    let n1 = TestNode::start_in(data.clone(), with("s3cret-pass", "au-1")).await;
    let n2 = TestNode::start_in(data.clone(), with("s3cret-pass", "au-2")).await;
    let (_, room) = n1.call().await;
    let mut a = WsClient::connect(&n1, &client_token()).await;
    let mut b = WsClient::connect(&n2, &psy_token()).await;
    a.join(&room).await;
    b.join(&room).await;
    b.send("offer", json!({"offer": {"auth": true}, "to": a.socket_id})).await;
    a.next_event("user-joined").await;
    assert_eq!(a.next_event("offer").await["offer"]["auth"], true);

    // A wrong password: the node refuses to start, saying why.
    let err = refused_start(data.path(), with("wrong", "au-3")).await;
    assert!(err.contains("NATS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_to_nats_with_a_token() {
    let nats = NatsServer::start_with_token("t0ken-for-tests");
    let data = Arc::new(tempfile::tempdir().unwrap());
    let with = |token: &'static str, id: &'static str| {
        let url = nats.url();
        move |s: &mut signalgrid::Settings| {
            s.cluster.nats_url = Some(url);
            s.cluster.name = "token".into();
            s.cluster.nats_token = Some(token.into());
            s.node_id = Some(id.into());
        }
    };
    let n1 = TestNode::start_in(data.clone(), with("t0ken-for-tests", "tk-1")).await;
    let n2 = TestNode::start_in(data.clone(), with("t0ken-for-tests", "tk-2")).await;
    let (_, room) = n1.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    b.send("offer", json!({"offer": {"token": true}, "to": a.socket_id})).await;
    assert_eq!(a.next_event("offer").await["offer"]["token"], true);

    let err = refused_start(data.path(), with("wrong-token", "tk-3")).await;
    assert!(err.contains("NATS"), "{err}");
}

/// Decentralised auth: the server trusts an operator, and each node presents a `.creds` file
/// (a user JWT signed by the application account, and the user's nkey seed). The cluster's
/// KV buckets live in that account's JetStream. Credentials from an account the server does
/// not know, or a file that is not a creds file, stop the node at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_to_nats_with_a_credentials_file() {
    let keys = tempfile::tempdir().unwrap();
    let operator = common::nats_creds::NatsOperator::new(keys.path());
    let nats = NatsServer::start_with_operator(&operator);
    let data = Arc::new(tempfile::tempdir().unwrap());
    let with = |creds: Option<PathBuf>, id: &'static str| {
        let url = nats.url();
        move |s: &mut signalgrid::Settings| {
            s.cluster.nats_url = Some(url);
            s.cluster.name = "creds".into();
            s.cluster.nats_creds_path = creds;
            s.node_id = Some(id.into());
        }
    };
    let n1 = TestNode::start_in(data.clone(), with(Some(operator.user_creds("node-1")), "cr-1")).await;
    let n2 = TestNode::start_in(data.clone(), with(Some(operator.user_creds("node-2")), "cr-2")).await;
    let (_, room) = n1.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    b.send("offer", json!({"offer": {"creds": true}, "to": a.socket_id})).await;
    assert_eq!(a.next_event("offer").await["offer"]["creds"], true);
    a.send("answer", json!({"answer": {"creds": true}, "to": b.socket_id})).await;
    assert_eq!(b.next_event("answer").await["answer"]["creds"], true);

    let err = refused_start(data.path(), with(Some(operator.stranger_creds("intruder")), "cr-3")).await;
    assert!(err.contains("NATS"), "unknown account: {err}");
    let err = refused_start(data.path(), with(None, "cr-5")).await;
    assert!(err.contains("NATS"), "no credentials: {err}");
    let not_creds = keys.path().join("not.creds");
    std::fs::write(&not_creds, "no JWT here\n").unwrap();
    let err = refused_start(data.path(), with(Some(not_creds.clone()), "cr-4")).await;
    assert!(err.contains(&not_creds.display().to_string()), "bad file: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_to_across_nodes_is_refused() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "c2", &data, "n1").await;
    let n2 = node(&nats.url(), "c2", &data, "n2").await;
    let (_, room1) = n1.call().await;
    let other = n1
        .create_session(&SessionSpec {
            client: "client-9".into(),
            psychologist: "psy-9".into(),
            ..SessionSpec::default()
        })
        .await;
    let room2 = n1.room_for(other["id"].as_str().unwrap(), "client-9").await;
    let mut a = WsClient::connect(&n1, &client_token()).await;
    let mut victim = WsClient::connect(&n2, &token("client-9", Role::Client)).await;
    let mut partner = WsClient::connect(&n1, &token("psy-9", Role::Psychologist)).await;
    a.join(&room1).await;
    victim.join(&room2).await;
    partner.join(&room2).await;
    victim.next_event("user-joined").await;
    a.send("offer", json!({"offer": {}, "to": victim.socket_id})).await;
    a.expect_error("PEER_NOT_FOUND").await;
    partner.send("ice-candidate", json!({"candidate": "marker", "to": victim.socket_id})).await;
    assert_eq!(victim.next_event("ice-candidate").await["candidate"], "marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_holds_when_many_race_into_one_room_across_three_nodes() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let nodes = [
        node(&nats.url(), "c3", &data, "r1").await,
        node(&nats.url(), "c3", &data, "r2").await,
        node(&nats.url(), "c3", &data, "r3").await,
    ];
    for round in 0..3 {
        let s = nodes[0].create_session(&SessionSpec::default()).await;
        let room = nodes[0].room_for(s["id"].as_str().unwrap(), "client-1").await;
        // 12 racers: distinct admins (admins count toward capacity), 4 per node.
        let mut clients = Vec::new();
        for i in 0..12 {
            clients.push(WsClient::connect(&nodes[i % 3], &token(&format!("ops-{round}-{i}"), Role::Admin)).await);
        }
        let joins = clients.into_iter().map(|mut c| {
            let room = room.clone();
            tokio::spawn(async move {
                c.send("join-room", json!({"roomId": room})).await;
                let v = c.next().await;
                if v["event"] != "room-joined" {
                    assert_eq!(v["data"]["code"], "ROOM_FULL", "{v}");
                }
                (v["event"] == "room-joined", c)
            })
        });
        let results = futures_util::future::join_all(joins).await;
        let admitted = results.iter().filter(|r| r.as_ref().unwrap().0).count();
        assert_eq!(admitted, 2, "round {round}: exactly two admitted");
        for r in results {
            let (ok, mut c) = r.unwrap();
            if !ok {
                continue;
            }
            c.send("leave-room", json!({"roomId": room})).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoining_on_another_node_replaces_the_old_connection() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "c4", &data, "x1").await;
    let n2 = node(&nats.url(), "c4", &data, "x2").await;
    let (_, room) = n1.call().await;
    let mut psy = WsClient::connect(&n1, &psy_token()).await;
    let mut old = WsClient::connect(&n1, &client_token()).await;
    psy.join(&room).await;
    old.join(&room).await;
    psy.next_event("user-joined").await;
    let mut new = WsClient::connect(&n2, &client_token()).await;
    new.join(&room).await;
    let (code, frames) = old.closed().await;
    assert_eq!(frames.first().map(|f| f["data"]["code"].clone()), Some(json!("SESSION_REPLACED")), "{frames:?}");
    assert_eq!(code, Some(4001));
    let mut seen = [psy.next().await, psy.next().await];
    seen.sort_by_key(|v| v["event"].as_str().unwrap().to_owned());
    assert_eq!(seen[0]["event"], "user-joined");
    assert_eq!(seen[0]["data"]["socketId"], new.socket_id.as_str());
    assert_eq!(seen[1]["event"], "user-left");
    assert_eq!(seen[1]["data"]["socketId"], old.socket_id.as_str());
    psy.send("offer", json!({"offer": {"n": 1}, "to": new.socket_id})).await;
    assert_eq!(new.next_event("offer").await["offer"]["n"], 1);
}

/// Room events and relayed frames travel on different subscriptions, so a newcomer's first
/// frame can reach a node before the room event announcing the newcomer. Members must still
/// see `user-joined` first, as on one node. A frame from someone not in the room, or to
/// someone not in it, is dropped by the receiving node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomers_first_frame_never_overtakes_user_joined() {
    use signalgrid_actors::ports::{Member, Membership};
    use signalgrid_cluster::nats::{subjects::Subjects, KvMembership};

    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "c5", &data, "o1").await;
    // o2 is alive, so the dead-node sweep leaves its member alone.
    let _n2 = node(&nats.url(), "c5", &data, "o2").await;
    let (_, room) = n1.call().await;
    let mut a = WsClient::connect(&n1, &client_token()).await;
    a.join(&room).await;

    // o2 admits a member into shared membership, but its room event never reaches o1.
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let subjects = Subjects::new("c5");
    let kv = async_nats::jetstream::new(nc.clone()).get_key_value(subjects.rooms_bucket()).await.unwrap();
    let newcomer = Member {
        conn_id: "newcomer-conn".into(),
        user_id: "psy-1".into(),
        user_name: "Dr Newcomer".into(),
        user_role: "psychologist".into(),
        node_id: "o2".into(),
        away_since_ms: None,
        media: None,
        waiting: false,
        joined_at_ms: 0,
    };
    KvMembership::new(kv).join(&room.as_str().into(), newcomer, 2).await.unwrap();

    // Then relays to `a` arrive on o1's inbox, in the documented envelope.
    let a_id = a.socket_id.clone();
    let delivery = |from: &str, n: u32| {
        let frame = json!({"event": "offer", "data": {"offer": {"n": n}, "from": from}});
        format!("{a_id}\n{room}\n{from}\n{frame}")
    };
    for (from, n) in [("stranger-conn", 0), ("newcomer-conn", 1), ("newcomer-conn", 2)] {
        nc.publish(subjects.inbox("o1"), delivery(from, n).into()).await.unwrap();
    }
    nc.flush().await.unwrap();

    let joined = a.next().await;
    assert_eq!(joined["event"], "user-joined", "{joined}");
    assert_eq!(joined["data"]["socketId"], "newcomer-conn");
    for n in [1, 2] {
        let v = a.next().await;
        assert_eq!((v["event"].as_str(), v["data"]["offer"]["n"].as_u64()), (Some("offer"), Some(n)), "{v}");
    }

    // Rooms stay isolated on the receiving side too: a delivery from a member of this room
    // to a connection of o1 in another room, or naming a room o1 has no members in, is
    // dropped (whatever the sending node checked).
    let other = n1
        .create_session(&SessionSpec {
            client: "client-7".into(),
            psychologist: "psy-7".into(),
            ..SessionSpec::default()
        })
        .await;
    let room2 = n1.room_for(other["id"].as_str().unwrap(), "client-7").await;
    let mut b = WsClient::connect(&n1, &token("client-7", Role::Client)).await;
    b.join(&room2).await;
    let b_id = b.socket_id.clone();
    let forged = |room: &str| {
        let frame = json!({"event": "offer", "data": {"offer": {"forged": room}, "from": "newcomer-conn"}});
        format!("{b_id}\n{room}\nnewcomer-conn\n{frame}")
    };
    for payload in [forged(&room), forged("room-with-nobody-here")] {
        nc.publish(subjects.inbox("o1"), payload.into()).await.unwrap();
    }
    // o1 reads its inbox in order: once `a` has this frame, the forged ones were handled.
    nc.publish(subjects.inbox("o1"), delivery("newcomer-conn", 3).into()).await.unwrap();
    nc.flush().await.unwrap();
    assert_eq!(a.next_event("offer").await["offer"]["n"], 3);
    let mut c = WsClient::connect(&n1, &token("psy-7", Role::Psychologist)).await;
    c.join(&room2).await;
    let first = b.next().await;
    assert_eq!(
        (first["event"].as_str(), first["data"]["userId"].as_str()),
        (Some("user-joined"), Some("psy-7")),
        "{first}"
    );
}

/// Nodes reach NATS over mutual TLS (their CA, their client certificate); a node with no
/// client certificate, or one from another CA, refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_use_mutual_tls_to_nats() {
    let pki = test_pki();
    let nats = NatsServer::start_with_mutual_tls(&pki);
    let data = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("tls://127.0.0.1:{}", nats.port);
    let with = |cert: Option<(&PathBuf, &PathBuf)>, id: &'static str| {
        let (url, ca) = (url.clone(), pki.ca.clone());
        let cert = cert.map(|(c, k)| (c.clone(), k.clone()));
        move |s: &mut signalgrid::Settings| {
            s.cluster.nats_url = Some(url);
            s.cluster.name = "tls".into();
            s.cluster.nats_tls_ca = Some(ca);
            if let Some((c, k)) = cert {
                s.cluster.nats_tls_cert = Some(c);
                s.cluster.nats_tls_key = Some(k);
            }
            s.node_id = Some(id.into());
        }
    };
    let ours = Some((&pki.client_cert, &pki.client_key));
    let n1 = TestNode::start_in(data.clone(), with(ours, "tls-1")).await;
    let n2 = TestNode::start_in(data.clone(), with(ours, "tls-2")).await;
    let (_, room) = n1.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    b.send("offer", json!({"offer": {"over": "tls"}, "to": a.socket_id})).await;
    assert_eq!(a.next_event("offer").await["offer"]["over"], "tls");
    a.send("answer", json!({"answer": {"over": "tls"}, "to": b.socket_id})).await;
    assert_eq!(b.next_event("answer").await["answer"]["over"], "tls");

    for (cert, what) in [(None, "no client certificate"), (Some((&pki.stranger_cert, &pki.stranger_key)), "another CA")]
    {
        let err = refused_start(data.path(), with(cert, "tls-x")).await;
        assert!(err.contains("NATS"), "{what}: {err}");
    }
}
