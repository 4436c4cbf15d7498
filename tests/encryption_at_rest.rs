//! Encryption at rest (PROTOCOL.md section 9) with real `signalgrid` processes, on the
//! embedded store, or on MongoDB with SIGNALGRID_TEST_STORE=mongo (one database per data
//! directory, as tests/common's nodes use):
//!
//! - with a key set, a call with distinctive names, a forwarded address and a user agent
//!   leaves none of them in the raw store (the SQLite files' bytes; every raw MongoDB
//!   document, read with the plain driver, and the outbox file), while the REST answers and
//!   `GET /api/audit` show them;
//! - `store rotate-key` from key A to key B, stopped half way (`--max-batches`) and run
//!   again, seals everything (plaintext from before keys were set too) with B; then start-up
//!   with only B works, with only A or no key fails naming kid B; half way, B alone fails
//!   naming kid A;
//! - `--max-duty` paces the batches (a pause after each but the last; none at 1; 0.5 by
//!   default on the embedded store, no pause on MongoDB) and a duty cycle out of range is
//!   refused;
//! - a malformed key is a start-up error naming its kid.

mod common;
#[path = "common/proc.rs"]
mod proc;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};

use base64::Engine as _;
use call_helpers::files_contain;
use common::*;
use proc::{cmd, NodeProc};
use serde_json::{json, Value};
use signalgrid_actors::ports::Store;
use signalgrid_actors::session::{
    now_ms, AuditAction, AuditEntry, NewSession, Party, PaymentStatus, SessionStatus, SessionType,
};

#[path = "common/call.rs"]
mod call_helpers;

const CLIENT_NAME: &str = "Quintessa Marlowe-Vance";
const PSY_NAME: &str = "Dr. Thaddeus Oakenshield";
const CLIENT_IP: &str = "203.0.113.147";
const USER_AGENT: &str = "SealCheck/9.4 (okapi-marmalade)";
const KID_A: &str = "kid-alpha";
const KID_B: &str = "kid-bravo";

fn key(kid: &str, byte: u8) -> String {
    format!("{kid}:{}", base64::engine::general_purpose::STANDARD.encode([byte; 32]))
}

/// The MongoDB database of `dir`'s store, on a Mongo run.
fn mongo_db(dir: &Path) -> Option<String> {
    common::mongo::nodes_on_mongo().then(|| common::mongo::database_for(dir))
}

/// The binary pointed at `dir`'s store, with `keys` (none: the variable unset).
fn bin(dir: &Path, keys: Option<&str>) -> Command {
    let mut c = cmd(dir);
    if let Some(db) = mongo_db(dir) {
        c.env("SIGNALGRID_MONGODB_URI", common::mongo::shared().uri()).env("SIGNALGRID_MONGODB_DATABASE", db);
    }
    if let Some(k) = keys {
        c.env("VIDEO_CALL_ENCRYPTION_KEY", k);
    }
    c
}

/// `dir`'s store, opened in this process with `keys`.
async fn open_store(dir: &Path, keys: Option<&str>) -> Arc<dyn Store> {
    let mut s = common::settings(dir);
    s.store.encryption_keys = keys.map(str::to_owned);
    if let Some(db) = mongo_db(dir) {
        s.store.mongodb_uri = Some(common::mongo::shared().uri());
        s.store.mongodb_database = db;
    }
    signalgrid::store::open(&s).await.expect("open the store")
}

/// Whether `needle` is anywhere at rest: the files of `dir` (SQLite store, WAL, outbox) and,
/// on a Mongo run, every document of every collection of its database, read raw, except the
/// platform's `users` (its `name` is the platform's to read; signalgrid adds a user there only
/// for a session made through its own `POST /api/sessions`, and never writes another field).
async fn at_rest(dir: &Path, needle: &str) -> bool {
    if files_contain(dir, needle.as_bytes()) {
        return true;
    }
    let Some(db) = mongo_db(dir) else { return false };
    let client = mongodb::Client::with_uri_str(common::mongo::shared().uri()).await.unwrap();
    let db = client.database(&db);
    for name in db.list_collection_names().await.unwrap().into_iter().filter(|n| n != "users") {
        let mut cur = db.collection::<mongodb::bson::Document>(&name).find(mongodb::bson::doc! {}).await.unwrap();
        while cur.advance().await.unwrap() {
            if format!("{:?}", cur.deserialize_current().unwrap()).contains(needle) {
                return true;
            }
        }
    }
    false
}

/// Runs `serve` and expects it to exit without listening; returns its stderr.
async fn start_fails(mut c: Command) -> String {
    let mut child = c
        .env("VIDEO_CALL_JWT_SECRET", SECRET)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(l) if l.starts_with("signalgrid listening on") => {
                let _ = child.kill();
                panic!("the node started: {}", lines.join("\n"));
            }
            Ok(l) => lines.push(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the node neither started nor failed: {}", lines.join("\n"));
            }
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(!status.success(), "start-up failed with a failing status");
    lines.join("\n")
}

/// `store rotate-key` with `keys` and `flags`: its exit status and stdout.
fn rotate(dir: &Path, keys: &str, flags: &[&str]) -> (Option<i32>, String) {
    let out = bin(dir, Some(keys)).args(["store", "rotate-key"]).args(flags).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 3)), "rotate-key failed: {stdout}\n{stderr}");
    (out.status.code(), stdout)
}

/// A WebSocket client whose upgrade carries the test's user agent and forwarded address.
async fn client_with_headers(url: &str) -> WsClient {
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    req.headers_mut().insert("user-agent", USER_AGENT.parse().unwrap());
    req.headers_mut().insert("x-forwarded-for", CLIENT_IP.parse().unwrap());
    let (ws, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.expect("connect timed out").unwrap();
    WsClient::from_stream(ws).await
}

/// The session's audit entries through `GET /api/audit`, once one of them carries the
/// client's address (the audit log is written in the background).
async fn audit_with_client_ip(http: &reqwest::Client, addr: &str, session: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let res = http
            .get(format!("http://{addr}/api/audit?sessionId={session}"))
            .header("x-auth-token", admin())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let entries = body["entries"].as_array().cloned().unwrap_or_default();
        if entries.iter().any(|e| e["action"] == "join_success" && e["ipAddress"] == CLIENT_IP) {
            return entries;
        }
        assert!(tokio::time::Instant::now() < deadline, "no join_success from {CLIENT_IP}: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_leaves_no_names_addresses_or_agents_at_rest_yet_reads_back_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin(dir.path(), Some(&key(KID_A, 7)));
    // Behind a "balancer" at 127.0.0.1, so that the client has an address of its own.
    c.env("SIGNALGRID_HTTP_PROXY_ADDRESSES", "127.0.0.1");
    let node = NodeProc::serve(c);
    let addr = node.addr.clone();
    let http = reqwest::Client::new();

    let mut body = SessionSpec::default().body();
    body["client"]["name"] = json!(CLIENT_NAME);
    body["psychologist"]["name"] = json!(PSY_NAME);
    let res = http
        .post(format!("http://{addr}/api/sessions"))
        .header("x-auth-token", admin())
        .header("user-agent", USER_AGENT)
        .header("x-forwarded-for", CLIENT_IP)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let session: Value = res.json().await.unwrap();
    let id = session["id"].as_str().unwrap().to_owned();
    let res = http
        .post(format!("http://{addr}/api/video-calls/generate-room/{id}"))
        .header("x-auth-token", client_token())
        .header("user-agent", USER_AGENT)
        .header("x-forwarded-for", CLIENT_IP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let room = res.json::<Value>().await.unwrap()["roomId"].as_str().unwrap().to_owned();

    let mut a = client_with_headers(&node.ws_url(&client_token())).await;
    let mut b = WsClient::connect_url(&node.ws_url(&psy_token())).await;
    a.send("join-room", json!({"roomId": room, "userName": CLIENT_NAME})).await;
    a.next_event("room-joined").await;
    b.send("join-room", json!({"roomId": room, "userName": PSY_NAME})).await;
    b.next_event("room-joined").await;
    a.next_event("user-joined").await;
    a.close().await;
    b.close().await;

    // Read back in the clear: the audit API, and (on the embedded store, whose sessions are
    // signalgrid's own) the session's names.
    let entries = audit_with_client_ip(&http, &addr, &id).await;
    assert!(entries.iter().any(|e| e["userAgent"] == USER_AGENT), "{entries:?}");
    if mongo_db(dir.path()).is_none() {
        let res =
            http.get(format!("http://{addr}/api/sessions/{id}")).header("x-auth-token", admin()).send().await.unwrap();
        let s: Value = res.json().await.unwrap();
        assert_eq!(
            (s["client"]["name"].as_str(), s["psychologist"]["name"].as_str()),
            (Some(CLIENT_NAME), Some(PSY_NAME))
        );
    }
    node.sigterm();
    assert!(node.exited().await.success());

    for (what, needle) in [
        ("the client's name", CLIENT_NAME),
        ("the psychologist's name", PSY_NAME),
        ("the client's address", CLIENT_IP),
        ("the user agent", USER_AGENT),
    ] {
        assert!(!at_rest(dir.path(), needle).await, "{what} ({needle}) is stored in the clear");
    }
    assert!(at_rest(dir.path(), &format!("sg1:{KID_A}:")).await, "values are stored sealed under kid A");
}

/// An audit entry from `ip`.
fn entry(n: usize, ip: &str) -> AuditEntry {
    AuditEntry {
        session_id: "rotated".into(),
        user_id: format!("u{n}"),
        action: AuditAction::JoinSuccess,
        timestamp: now_ms(),
        metadata: json!({ "n": n, "userName": CLIENT_NAME }),
        ip_address: Some(ip.into()),
        user_agent: Some(USER_AGENT.into()),
    }
}

fn new_session() -> NewSession {
    NewSession {
        client: Party { id: "client-1".into(), name: CLIENT_NAME.into() },
        psychologist: Party { id: "psy-1".into(), name: PSY_NAME.into() },
        session_date: now_ms(),
        duration_minutes: 50,
        session_type: SessionType::Individual,
        payment_status: PaymentStatus::Paid,
        status: SessionStatus::Scheduled,
        waiting_room: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_from_a_to_b_resumes_after_a_stop_and_start_up_names_missing_kids() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (key(KID_A, 1), key(KID_B, 2));
    // 300 entries (and a session) written before keys were set, 2,200 under key A.
    let plain = open_store(dir.path(), None).await;
    for n in 0..300 {
        plain.audit(entry(n, "198.51.100.1")).await.unwrap();
    }
    plain.create_session(new_session()).await.unwrap();
    drop(plain);
    let sealed = open_store(dir.path(), Some(&a)).await;
    for n in 300..2500 {
        sealed.audit(entry(n, CLIENT_IP)).await.unwrap();
    }
    sealed.create_session(new_session()).await.unwrap();
    let trail = sealed.audit_trail("rotated").await.unwrap();
    assert_eq!(trail.len(), 2500, "plaintext and sealed entries both read");
    assert_eq!(
        (trail[0].ip_address.as_deref(), trail[2499].ip_address.as_deref()),
        (Some("198.51.100.1"), Some(CLIENT_IP))
    );
    drop(sealed);

    // B first, A to open: one batch of 1,000, then stopped.
    let b_then_a = format!("{b},{a}");
    let (code, out) = rotate(dir.path(), &b_then_a, &["--batch-size", "1000", "--max-batches", "1"]);
    assert_eq!(code, Some(3), "stopped before the end: {out}");
    assert!(
        out.contains("audit entries: 1000 read, 1000 rewritten (2100 values re-sealed, 900 sealed from plaintext)"),
        "{out}"
    );
    assert!(at_rest(dir.path(), &format!("sg1:{KID_A}:")).await, "half way, values under A remain");
    let err = start_fails(bin(dir.path(), Some(&b))).await;
    assert!(err.contains(&format!("{KID_A:?}")), "half way, B alone does not start, naming kid A: {err}");

    // Run again: it completes.
    let (code, out) = rotate(dir.path(), &b_then_a, &["--batch-size", "1000"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("audit entries: 2500 read, 1500 rewritten"), "the first 1,000 are done already: {out}");
    assert!(out.contains(&format!("every value is sealed with key {KID_B:?}")), "{out}");
    assert!(out.contains(&format!("no longer in use (may be removed from the configuration): {KID_A}")), "{out}");
    assert!(!at_rest(dir.path(), &format!("sg1:{KID_A}:")).await, "nothing under A is left");
    for needle in ["198.51.100.1", CLIENT_IP, USER_AGENT, CLIENT_NAME, PSY_NAME] {
        assert!(!at_rest(dir.path(), needle).await, "{needle} is stored in the clear after the rotation");
    }
    let (_, again) = rotate(dir.path(), &b_then_a, &[]);
    assert!(again.contains("audit entries: 2500 read, 0 rewritten"), "a third run changes nothing: {again}");

    // Only B: starts, and reads every entry in the clear.
    let node = NodeProc::serve(bin(dir.path(), Some(&b)));
    let res = reqwest::Client::new()
        .get(format!("http://{}/api/audit?sessionId=rotated&action=join_success&limit=1000", node.addr))
        .header("x-auth-token", admin())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1000);
    assert!(entries.iter().all(|e| e["ipAddress"] == CLIENT_IP && e["userAgent"] == USER_AGENT), "{:?}", entries[0]);
    assert_eq!(entries[0]["metadata"]["userName"], CLIENT_NAME);
    node.sigterm();
    assert!(node.exited().await.success());

    // Only A, or no key at all: start-up fails naming kid B.
    for keys in [Some(a.as_str()), None] {
        let err = start_fails(bin(dir.path(), keys)).await;
        assert!(err.contains(&format!("{KID_B:?}")), "start-up with {keys:?} names kid B: {err}");
    }
}

/// The seconds of pause `rotate-key` printed for `kind` (`paused 0.012 s`), and its duty
/// cycle in percent.
fn pacing(out: &str, kind: &str) -> (f64, u32) {
    let line = out.lines().find(|l| l.starts_with(kind)).unwrap_or_else(|| panic!("no {kind} line: {out}"));
    let paused = line.split("paused ").nth(1).and_then(|r| r.split(' ').next()).expect(line);
    let duty = line.split("at most ").nth(1).and_then(|r| r.split('%').next()).expect(line);
    (paused.parse().expect(line), duty.parse().expect(line))
}

#[tokio::test]
async fn rotation_is_paced_by_max_duty_and_refuses_a_duty_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let a = key(KID_A, 1);
    let plain = open_store(dir.path(), None).await;
    for n in 0..300 {
        plain.audit(entry(n, "198.51.100.1")).await.unwrap();
    }
    drop(plain);
    for bad in ["0", "0.005", "1.5", "half"] {
        let out = bin(dir.path(), Some(&a)).args(["store", "rotate-key", "--max-duty", bad]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--max-duty {bad} is refused: {err}");
        assert!(err.contains("--max-duty") && err.contains(bad), "{err}");
    }
    assert!(at_rest(dir.path(), "198.51.100.1").await, "a refused run changed nothing");

    // Six batches of 50: a pause after each of the first five, three times as long as the
    // batch, at least 2 ms each.
    let (code, out) = rotate(dir.path(), &a, &["--batch-size", "50", "--max-duty", "0.25"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("audit entries: 300 read, 300 rewritten"), "{out}");
    let (paused, duty) = pacing(&out, "audit entries");
    assert_eq!(duty, 25, "{out}");
    assert!(paused >= 0.010, "paused after each batch but the last: {out}");
    assert!(!at_rest(dir.path(), "198.51.100.1").await, "every entry was sealed");

    // Again with key B: at 1, batches run back to back.
    let b_then_a = format!("{},{a}", key(KID_B, 2));
    let (code, out) = rotate(dir.path(), &b_then_a, &["--batch-size", "50", "--max-duty", "1"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("audit entries: 300 read, 300 rewritten"), "{out}");
    assert_eq!(pacing(&out, "audit entries"), (0.0, 100), "{out}");

    // The default: half the time on the embedded store, no pause on MongoDB.
    let (_, out) = rotate(dir.path(), &b_then_a, &[]);
    let expected = if mongo_db(dir.path()).is_some() { 100 } else { 50 };
    assert_eq!(pacing(&out, "audit entries").1, expected, "{out}");
}

#[tokio::test]
async fn a_malformed_key_is_a_start_up_error_naming_its_kid() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("short-kid:AAAA".to_owned(), "\"short-kid\"", "3 bytes"),
        ("garbled:%%%not-base64".to_owned(), "\"garbled\"", "not base64"),
        (format!("{},{}", key("twice", 1), key("twice", 2)), "\"twice\"", "given twice"),
    ];
    for (spec, kid, why) in cases {
        let err = start_fails(bin(dir.path(), Some(&spec))).await;
        assert!(err.contains(kid) && err.contains(why), "{spec}: {err}");
        assert!(!err.contains("%%%not-base64") && !err.contains("AAAA"), "the key itself is not printed: {err}");
    }
}
