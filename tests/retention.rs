//! Retention (PROTOCOL.md section 9): entries older than `retention.audit_days` go in
//! bounded batches, newer ones stay; a dry run removes nothing; of two nodes on a real
//! nats-server purging at once exactly one holds the lock and purges; batches are paced;
//! `signalgrid store purge` (with `--max-duty`)
//! and `signalgrid audit export` as the real binary. Every case runs on the embedded store,
//! or on MongoDB with SIGNALGRID_TEST_STORE=mongo (as tests/common's nodes do).

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/proc.rs"]
mod proc;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use cluster_support::NatsServer;
// The shared modules reach the harness through the crate root.
#[allow(unused_imports)]
use common::*;
use proc::{cmd, NodeProc};
use serde_json::{json, Value};
use signalgrid::store::pace::{Pace, Pacer, MIN_PAUSE};
use signalgrid::store::retention::{self, Purger, Round, LOCK_KEY};
use signalgrid_actors::ports::Store;
use signalgrid_actors::session::{now_ms, AuditAction, AuditEntry, AuditFilter};
use signalgrid_cluster::nats::KvLease;
use signalgrid_config::RetentionSettings;

/// The MongoDB database of this test's store, when the run is on MongoDB.
fn mongo_db(dir: &Path) -> Option<String> {
    common::mongo::nodes_on_mongo().then(|| common::mongo::database_for(dir))
}

/// The store of `dir` (the MongoDB database named after it, on a Mongo run).
async fn open_store(dir: &Path) -> Arc<dyn Store> {
    let mut s = common::settings(dir);
    if let Some(db) = mongo_db(dir) {
        s.store.mongodb_uri = Some(common::mongo::shared().uri());
        s.store.mongodb_database = db;
    }
    signalgrid::store::open(&s).await.expect("open the store")
}

/// The binary pointed at the same store as `open_store(dir)`.
fn bin(dir: &Path) -> Command {
    let mut c = cmd(dir);
    if let Some(db) = mongo_db(dir) {
        c.env("SIGNALGRID_MONGODB_URI", common::mongo::shared().uri()).env("SIGNALGRID_MONGODB_DATABASE", db);
    }
    c
}

fn entry(session: &str, at: DateTime<Utc>, n: usize) -> AuditEntry {
    AuditEntry {
        session_id: session.into(),
        user_id: "u".into(),
        action: AuditAction::JoinAttempt,
        timestamp: at,
        metadata: json!({ "n": n }),
        ip_address: None,
        user_agent: None,
    }
}

async fn all(store: &dyn Store) -> Vec<AuditEntry> {
    store.audit_page(&AuditFilter::default(), None, 10_000).await.unwrap().entries
}

/// Writes `old` entries past a 30-day limit at `now` (the newest of them 1 ms past it) and
/// `new` ones within it (an hour apart, from an hour inside it). Returns the limit.
async fn seed(store: &dyn Store, now: DateTime<Utc>, old: usize, new: usize) -> DateTime<Utc> {
    let limit = retention::cutoff(30, now).unwrap();
    for n in 0..old {
        store.audit(entry("old", limit - Duration::milliseconds(1 + (n as i64) * 3_600_000), n)).await.unwrap();
    }
    for n in 0..new {
        store.audit(entry("new", limit + Duration::hours(1 + n as i64), 1000 + n)).await.unwrap();
    }
    limit
}

#[tokio::test]
async fn entries_past_the_limit_go_in_batches_and_newer_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let now = now_ms();
    let limit = seed(&*store, now, 25, 5).await;
    store.audit(entry("new", limit, 2000)).await.unwrap(); // exactly at the limit: stays
    assert_eq!(retention::expired(&*store, limit).await.unwrap(), 25, "a dry run counts them");
    assert_eq!(all(&*store).await.len(), 31, "counting removed nothing");
    // Batches of 4: seven calls, the last one short, with a pause after each of the first six.
    let mut pacer = Pacer::new(Pace::new(0.5).unwrap());
    assert_eq!(retention::purge_before(&*store, limit, 4, &mut pacer, None).await.unwrap(), 25);
    assert!(pacer.paused() >= MIN_PAUSE * 6, "paused between batches: {:?}", pacer.paused());
    let left = all(&*store).await;
    assert_eq!(left.len(), 6);
    assert!(left.iter().all(|e| e.session_id == "new" && e.timestamp >= limit), "{left:?}");
    let mut unpaced = Pacer::new(Pace::UNPACED);
    assert_eq!(retention::purge_before(&*store, limit, 4, &mut unpaced, None).await.unwrap(), 0);
    assert_eq!(unpaced.paused(), std::time::Duration::ZERO);
    assert_eq!(retention::cutoff(0, now), None, "audit_days 0 keeps everything");
}

/// Two nodes of one cluster purge at once: the lock lets exactly one run. The other stays
/// out while the first holds the lock, and takes over once it is given up.
#[tokio::test]
async fn two_nodes_purging_at_once_do_not_both_run() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let now = now_ms();
    seed(&*store, now, 20, 3).await;
    let settings = RetentionSettings { audit_days: 30, purge_every_secs: 3600, purge_batch: 7, webhook_days: 0 };
    let mut nodes = Vec::new();
    for id in ["node-a", "node-b"] {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let lease = KvLease::open(&js, "signalgrid_test_locks", LOCK_KEY, id, retention::LOCK_TTL).await.unwrap();
        nodes.push(Purger {
            store: store.clone(),
            settings: settings.clone(),
            pace: Pace::UNPACED,
            lease: Some(lease),
        });
    }
    let (b, a) = (nodes.pop().unwrap(), nodes.pop().unwrap());
    let (mut a, mut b) = (a, b);
    let (ra, rb) = tokio::time::timeout(WAIT, async { tokio::join!(a.round(now), b.round(now)) }).await.unwrap();
    let rounds = [ra.unwrap(), rb.unwrap()];
    let ran: Vec<_> = rounds.iter().filter(|r| matches!(r, Round::Purged(_))).collect();
    assert_eq!(ran, [&Round::Purged(20)], "exactly one node purged: {rounds:?}");
    let (mut leader, mut other, leader_id) =
        if matches!(rounds[0], Round::Purged(_)) { (a, b, "node-a") } else { (b, a, "node-b") };
    let lease = leader.lease.as_ref().unwrap();
    assert_eq!(lease.holder().await.unwrap().as_deref(), Some(leader_id));
    assert_eq!(all(&*store).await.len(), 3);

    // The leader keeps the lock between rounds; the other node still stays out.
    seed(&*store, now, 2, 0).await;
    assert_eq!(other.round(now).await.unwrap(), Round::NotLeader);
    assert_eq!(leader.round(now).await.unwrap(), Round::Purged(2));
    // Given up (a node stopping), the lock passes on at once.
    seed(&*store, now, 3, 0).await;
    leader.lease.as_mut().unwrap().release().await;
    assert_eq!(other.round(now).await.unwrap(), Round::Purged(3));
    assert_eq!(leader.round(now).await.unwrap(), Round::NotLeader);
}

/// The same with two real `signalgrid serve` processes on one store: each logs its first
/// round; exactly one purged.
#[tokio::test]
async fn two_node_processes_purge_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    seed(&*store, now_ms(), 12, 2).await;
    let mut logs = Vec::new();
    let mut procs = Vec::new();
    for id in ["p-1", "p-2"] {
        let mut c = bin(dir.path());
        c.env("VIDEO_CALL_LOG_LEVEL", "warn,signalgrid::store::retention=info")
            .env("SIGNALGRID_LOG_FORMAT", "json")
            .env("SIGNALGRID_AUDIT_RETENTION_DAYS", "30");
        procs.push(NodeProc::serve_with(c, &["--nats-url", &nats.url(), "--cluster", "ret", "--node-id", id]));
    }
    for p in &procs {
        let fields = loop {
            let line = p.stderr.recv_timeout(WAIT).expect("the node logs its first retention round");
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if v["message"].as_str().is_some_and(|m| m.starts_with("retention purge")) {
                break v;
            }
        };
        logs.push(fields);
    }
    let done: Vec<&Value> = logs.iter().filter(|f| f["message"] == "retention purge done").collect();
    assert_eq!(done.len(), 1, "exactly one node purged: {logs:?}");
    assert_eq!(done[0]["removed"], 12, "{logs:?}");
    let out = logs.iter().filter(|f| f["message"] == "retention purge left to the node holding the lock");
    assert_eq!(out.count(), 1, "{logs:?}");
    assert_eq!(all(&*store).await.len(), 2);
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn store_purge_and_audit_export_as_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    seed(&*store, now_ms(), 9, 4).await;
    let purge = |dry: bool| {
        let mut c = bin(dir.path());
        c.env("SIGNALGRID_AUDIT_RETENTION_DAYS", "30").args(["store", "purge"]);
        if dry {
            c.arg("--dry-run");
        }
        c
    };
    assert_eq!(run(&mut purge(true)).trim(), "would remove 9");
    assert_eq!(all(&*store).await.len(), 13, "a dry run removes nothing");

    let out = run(bin(dir.path()).args(["audit", "export", "--session-id", "old", "--action", "join_attempt"]));
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<u64> = lines.iter().map(|e| e["metadata"]["n"].as_u64().unwrap()).collect();
    assert_eq!(got, (0..9).collect::<Vec<_>>(), "newest first (n grows with age)");
    assert!(lines.iter().all(|e| e["sessionId"] == "old" && e["timestamp"].as_str().unwrap().ends_with('Z')));
    let reads = store
        .audit_page(&AuditFilter { action: Some(AuditAction::AuditRead), ..Default::default() }, None, 10)
        .await
        .unwrap()
        .entries;
    assert_eq!(reads.len(), 1, "the export is itself audited");
    assert_eq!((reads[0].user_id.as_str(), &reads[0].metadata["via"]), ("cli", &json!("cli")));

    let mut refused = purge(false);
    let out = refused.args(["--max-duty", "1.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a duty cycle past 1 is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-duty"));
    assert_eq!(run(&mut purge(true)).trim(), "would remove 9", "a refused run removed nothing");

    // Batches of 2: five, with a pause after each of the first four (at least 2 ms each).
    let removed = run(purge(false).env("SIGNALGRID_PURGE_BATCH", "2").args(["--max-duty", "0.3"]));
    assert!(removed.starts_with("removed 9 in "), "{removed}");
    assert!(removed.contains("batches at most 30% of the time"), "{removed}");
    let paused: f64 = removed.split("paused ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!(paused >= 0.008, "paused between batches: {removed}");
    let again = run(&mut purge(false));
    assert!(again.starts_with("removed 0 in "), "{again}");
    let default = if mongo_db(dir.path()).is_some() { "at most 100% of the time" } else { "at most 50% of the time" };
    assert!(again.contains(default), "paced by default on the embedded store only: {again}");
    let left = all(&*store).await;
    assert_eq!(left.len(), 5, "the four within the limit and the export's audit_read");
    assert!(left.iter().all(|e| e.session_id != "old" || e.action == AuditAction::AuditRead), "{left:?}");
}
