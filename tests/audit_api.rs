//! `GET /api/audit` (PROTOCOL.md sections 9 and 10, "Audit API") on a real node: filters,
//! cursor pages that stay stable while entries arrive, NDJSON streaming, admins only, and one
//! `audit_read` per request. Entries are written through the node's own store (the Mongo
//! store with SIGNALGRID_TEST_STORE=mongo) with explicit timestamps.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::{admin, client_token, psy_token, TestNode};
use serde_json::{json, Value};
use signalgrid_actors::ports::Store;
use signalgrid_actors::session::{now_ms, AuditAction, AuditEntry, AuditFilter};

fn store(node: &TestNode) -> Arc<dyn Store> {
    node.server.as_ref().unwrap().app.store.clone()
}

fn entry(session: &str, user: &str, action: AuditAction, at: DateTime<Utc>, n: usize) -> AuditEntry {
    AuditEntry {
        session_id: session.into(),
        user_id: user.into(),
        action,
        timestamp: at,
        metadata: json!({ "n": n }),
        ip_address: Some("192.0.2.7".into()),
        user_agent: Some("test-agent/1".into()),
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn get(node: &TestNode, query: &str, token: Option<&str>) -> (u16, Value) {
    let res = node.get(&format!("/api/audit{query}"), token).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// The `n` metadata of the entries that are not `audit_read`.
fn ns(body: &Value) -> Vec<u64> {
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] != "audit_read")
        .map(|e| e["metadata"]["n"].as_u64().unwrap())
        .collect()
}

async fn audit_reads(store: &dyn Store) -> Vec<AuditEntry> {
    let f = AuditFilter { action: Some(AuditAction::AuditRead), ..Default::default() };
    store.audit_page(&f, None, 1000).await.unwrap().entries
}

#[tokio::test]
async fn filters_select_entries_and_bad_parameters_are_named() {
    let node = TestNode::start().await;
    let st = store(&node);
    let base = now_ms() - Duration::hours(1);
    let at = |s: i64| base + Duration::seconds(s);
    let rows = [
        ("s1", "u1", AuditAction::JoinAttempt, 0),
        ("s1", "u2", AuditAction::JoinSuccess, 1),
        ("s2", "u1", AuditAction::CallStart, 2),
        ("s2", "u2", AuditAction::CallEnd, 3),
        ("s1", "u1", AuditAction::Error, 4),
    ];
    for (n, (s, u, a, sec)) in rows.iter().enumerate() {
        st.audit(entry(s, u, *a, at(*sec), n)).await.unwrap();
    }
    let tok = admin();
    let (status, body) = get(&node, "?sessionId=s1", Some(&tok)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ns(&body), vec![4, 1, 0], "newest first");
    assert_eq!(body["nextCursor"], Value::Null);
    let e4 = &body["entries"].as_array().unwrap().iter().find(|e| e["metadata"]["n"] == 4).unwrap();
    assert_eq!(
        **e4,
        json!({
            "timestamp": iso(at(4)), "action": "error", "sessionId": "s1", "userId": "u1",
            "ipAddress": "192.0.2.7", "userAgent": "test-agent/1", "metadata": { "n": 4 },
        })
    );
    assert_eq!(ns(&get(&node, "?userId=u1", Some(&tok)).await.1), vec![4, 2, 0]);
    assert_eq!(ns(&get(&node, "?action=call_start", Some(&tok)).await.1), vec![2]);
    let range = format!("?from={}&to={}", iso(at(1)), iso(at(3))).replace('+', "%2B");
    assert_eq!(ns(&get(&node, &range, Some(&tok)).await.1), vec![3, 2, 1], "from and to are inclusive");
    let both = format!("?sessionId=s2&userId=u2&to={}", iso(at(3)));
    assert_eq!(ns(&get(&node, &both, Some(&tok)).await.1), vec![3]);

    let (status, body) = get(&node, "?limit=0&from=yesterday&action=nope&bogus=1&cursor=%21%21", Some(&tok)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    let fields = body["error"]["details"]["fields"].as_object().unwrap();
    let mut named: Vec<&str> = fields.keys().map(String::as_str).collect();
    named.sort_unstable();
    assert_eq!(named, ["action", "bogus", "cursor", "from", "limit"]);
    let (status, _) = get(&node, &format!("?from={}&to={}", iso(at(3)), iso(at(1))), Some(&tok)).await;
    assert_eq!(status, 400, "from after to");
}

#[tokio::test]
async fn only_admins_read_the_audit_log() {
    let node = TestNode::start().await;
    let (status, body) = get(&node, "", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("UNAUTHORIZED")));
    for tok in [client_token(), psy_token()] {
        let (status, body) = get(&node, "", Some(&tok)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("FORBIDDEN")), "{body}");
        let res = node.get("/api/audit?format=ndjson", Some(&tok)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 403);
    }
    assert!(audit_reads(&*store(&node)).await.is_empty(), "a refused request reads nothing and records nothing");
}

/// Pages keyed on (timestamp, id): entries that share a millisecond across a page boundary
/// are neither skipped nor repeated, and entries written between page reads (newer ones, and
/// ones in the very millisecond of the cursor) do not shift the pages still to come.
#[tokio::test]
async fn pages_miss_and_repeat_nothing_while_entries_arrive() {
    let node = TestNode::start().await;
    let st = store(&node);
    let base = now_ms() - Duration::minutes(30);
    const N: usize = 30;
    // Three entries per millisecond, so page boundaries fall inside a millisecond.
    let at = |n: usize| base + Duration::milliseconds((n / 3) as i64);
    for n in 0..N {
        st.audit(entry("pg", "u", AuditAction::JoinAttempt, at(n), n)).await.unwrap();
    }
    let tok = admin();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut extra = 1000;
    loop {
        pages += 1;
        assert!(pages <= N, "pagination ends");
        let q = match &cursor {
            Some(c) => format!("?sessionId=pg&action=join_attempt&limit=7&cursor={c}"),
            None => "?sessionId=pg&action=join_attempt&limit=7".to_owned(),
        };
        let (status, body) = get(&node, &q, Some(&tok)).await;
        assert_eq!(status, 200, "{body}");
        let page = ns(&body);
        seen.extend(page.iter().copied());
        let Some(next) = body["nextCursor"].as_str() else { break };
        cursor = Some(next.to_owned());
        // New entries while the reader pages: one newest, one in the cursor's millisecond.
        let last = *page.last().unwrap() as usize;
        for when in [now_ms(), at(last)] {
            st.audit(entry("pg", "u", AuditAction::JoinAttempt, when, extra)).await.unwrap();
            extra += 1;
        }
    }
    let originals: Vec<u64> = seen.iter().copied().filter(|n| *n < 1000).collect();
    let distinct: HashSet<u64> = originals.iter().copied().collect();
    assert_eq!(originals.len(), distinct.len(), "no entry repeated: {seen:?}");
    assert_eq!(distinct, (0..N as u64).collect::<HashSet<_>>(), "no entry missed: {seen:?}");
    assert!(seen.iter().all(|n| *n < 1000), "entries newer than the cursor stay off later pages: {seen:?}");
    let order: Vec<u64> = originals.iter().map(|n| n / 3).collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "newest first: {seen:?}");
    assert_eq!(pages, N.div_ceil(7));
}

#[tokio::test]
async fn ndjson_streams_every_matching_entry_ignoring_limit_and_cursor() {
    let node = TestNode::start().await;
    let st = store(&node);
    let base = now_ms() - Duration::minutes(10);
    // More than two of the server's read batches.
    const N: usize = 1203;
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..N {
        let st = st.clone();
        writes.spawn(async move {
            st.audit(entry("nd", "u", AuditAction::JoinSuccess, base + Duration::milliseconds(n as i64), n)).await
        });
    }
    while let Some(r) = tokio::time::timeout(common::WAIT, writes.join_next()).await.expect("writes finish") {
        r.unwrap().unwrap();
    }
    st.audit(entry("other", "u", AuditAction::JoinSuccess, base, 9999)).await.unwrap();
    let res = node
        .get("/api/audit?sessionId=nd&action=join_success&format=ndjson&limit=1&cursor=MTox", Some(&admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = tokio::time::timeout(common::WAIT, res.text()).await.unwrap().unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("one JSON per line")).collect();
    assert_eq!(lines.len(), N);
    let got: Vec<u64> = lines.iter().map(|e| e["metadata"]["n"].as_u64().unwrap()).collect();
    assert_eq!(got, (0..N as u64).rev().collect::<Vec<_>>(), "every entry once, newest first");
    assert!(lines.iter().all(|e| e["sessionId"] == "nd" && e["action"] == "join_success"));
}

#[tokio::test]
async fn every_read_records_one_audit_read() {
    let node = TestNode::start().await;
    let st = store(&node);
    st.audit(entry("r1", "u", AuditAction::CallStart, now_ms() - Duration::minutes(1), 0)).await.unwrap();
    let tok = admin();
    assert_eq!(get(&node, "", Some(&tok)).await.0, 200);
    assert_eq!(get(&node, "?sessionId=r1&limit=1", Some(&tok)).await.0, 200);
    let res = node.get("/api/audit?action=call_start&format=ndjson", Some(&tok)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.text().await.unwrap();
    // Refused and invalid requests read nothing, so record nothing.
    assert_eq!(get(&node, "", Some(&client_token())).await.0, 403);
    assert_eq!(get(&node, "?limit=x", Some(&tok)).await.0, 400);

    let reads = audit_reads(&*st).await;
    assert_eq!(reads.len(), 3, "{reads:?}");
    assert!(reads.iter().all(|e| e.user_id == "ops-admin" && e.ip_address.as_deref() == Some("127.0.0.1")));
    let mut formats: Vec<&str> = reads.iter().map(|e| e.metadata["format"].as_str().unwrap()).collect();
    formats.sort_unstable();
    assert_eq!(formats, ["json", "json", "ndjson"]);
    let by_session = reads.iter().find(|e| e.session_id == "r1").expect("the read of r1 is on r1's trail");
    assert_eq!(by_session.metadata["filters"]["sessionId"], "r1");
    let by_action = reads.iter().find(|e| e.metadata["format"] == "ndjson").unwrap();
    assert_eq!(by_action.metadata["filters"]["action"], "call_start");
    // The API shows them too, with sessionId null for a read of no one session.
    let (_, body) = get(&node, "?action=audit_read", Some(&tok)).await;
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "the three reads and this one");
    assert_eq!(entries.iter().filter(|e| e["sessionId"].is_null()).count(), 3);
}
