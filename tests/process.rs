//! The real `signalgrid` binary: start-up refusals, the CLI, and graceful shutdown on SIGTERM
//! (NODE_DRAINING to clients, exit 0, data flushed).

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

#[path = "common/proc.rs"]
mod proc;
use proc::{cmd, NodeProc};

/// Runs to completion (bounded by the process finishing; these commands do not serve).
fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().expect("run signalgrid");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    let (ok, _, err) = run(&mut c);
    assert!(!ok);
    assert!(err.contains("VIDEO_CALL_JWT_SECRET"), "{err}");
    assert!(err.contains("--dev"), "{err}");
}

#[test]
fn a_bad_setting_stops_start_up_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.env("VIDEO_CALL_JWT_SECRET", SECRET).env("SOCKET_CONNECTION_LIMIT", "lots").args(["serve"]);
    let (ok, _, err) = run(&mut c);
    assert!(!ok);
    assert!(err.contains("SOCKET_CONNECTION_LIMIT") && err.contains("limits.max_connections"), "{err}");

    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[limits]\nmax_frame_bytes = \"big\"\n").unwrap();
    let mut c = cmd(dir.path());
    c.env("VIDEO_CALL_JWT_SECRET", SECRET).arg("--config").arg(&cfg).arg("serve");
    let (ok, _, err) = run(&mut c);
    assert!(!ok);
    assert!(err.contains("max_frame_bytes"), "{err}");
}

#[tokio::test]
async fn dev_mode_makes_up_a_secret_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.arg("serve").arg("--dev").args(["--listen", "127.0.0.1:0"]).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let mut lines = BufReader::new(err).lines().map_while(Result::ok);
    let warned = lines.by_ref().take(20).any(|l| l.contains("WARNING") && l.contains("made one up"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "--dev without a secret warns loudly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tokens_and_sessions_work_against_a_served_node_which_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mint = |user: &str, role: &str| {
        let (ok, out, err) =
            run(cmd(dir.path()).env("VIDEO_CALL_JWT_SECRET", SECRET).args(["token", "--user", user, "--role", role]));
        assert!(ok, "{err}");
        out.trim().to_owned()
    };
    let (ok, out, err) = run(cmd(dir.path()).args([
        "session",
        "create",
        "--client-id",
        "client-1",
        "--psychologist-id",
        "psy-1",
        "--starts-in",
        "5",
    ]));
    assert!(ok, "{err}");
    let session_id = out.trim().to_owned();
    assert_eq!(session_id.len(), 24);

    let p = NodeProc::serve(cmd(dir.path()));
    let base = format!("http://{}", p.addr);
    let http = reqwest::Client::new();
    let client = mint("client-1", "client");
    let res = http
        .post(format!("{base}/api/video-calls/generate-room/{session_id}"))
        .header("x-auth-token", &client)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let room = res.json::<serde_json::Value>().await.unwrap()["roomId"].as_str().unwrap().to_owned();

    let mut a = WsClient::connect_url(&format!("ws://{}/ws?token={client}", p.addr)).await;
    let mut b = WsClient::connect_url(&format!("ws://{}/ws?token={}", p.addr, mint("psy-1", "psychologist"))).await;
    a.join(&room).await;
    b.join(&room).await;
    a.next_event("user-joined").await;
    b.send("ice-candidate", json!({"candidate": {"c": 1}, "to": a.socket_id})).await;
    assert_eq!(a.next_event("ice-candidate").await["from"], b.socket_id.as_str());

    let status = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    for c in [&mut a, &mut b] {
        let (code, frames) = c.closed().await;
        assert!(
            frames.iter().any(|f| f["event"] == "error" && f["data"]["code"] == "NODE_DRAINING"),
            "NODE_DRAINING before close: {frames:?}"
        );
        assert_eq!(code, Some(1012));
    }
    let exit = p.exited().await;
    assert!(exit.success(), "exit status {exit:?}");

    // The call record written while serving is in the store file after exit.
    use signalgrid_actors::ports::Store;
    let store = signalgrid::store::EmbeddedStore::open(dir.path()).unwrap();
    let s = store.session(&session_id).await.unwrap().unwrap();
    assert_eq!(s.meeting_link.as_deref(), Some(room.as_str()));
    assert!(s.video_call_started.is_some());
    assert!(s.access_count >= 2);
    let trail = store.audit_trail(&session_id).await.unwrap();
    for (user, action) in [("client-1", "join_success"), ("psy-1", "join_success")] {
        assert!(
            trail.iter().any(|e| e.user_id == user && e.action.as_str() == action),
            "{action} by {user} in the audit trail: {trail:?}"
        );
    }
    // Both joins race to record the start; whichever wins, the call starts exactly once.
    let starts: Vec<_> = trail.iter().filter(|e| e.action.as_str() == "call_start").collect();
    assert_eq!(starts.len(), 1, "one call_start in the audit trail: {trail:?}");
    assert!(["client-1", "psy-1"].contains(&starts[0].user_id.as_str()), "{starts:?}");
}

#[tokio::test]
async fn json_logs_carry_one_line_per_request_with_its_id_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.env("VIDEO_CALL_LOG_LEVEL", "info");
    let p = NodeProc::serve_with(c, &["--log-format", "json"]);
    let tok = token("client-1", signalgrid_actors::identity::Role::Client);
    let res = reqwest::Client::new()
        .get(format!("http://{}/api/video-calls/config", p.addr))
        .header("x-auth-token", &tok)
        .header("x-request-id", "log-check-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let line = loop {
        let l = p.stderr.recv_timeout(WAIT).expect("the request is logged");
        if l.contains("log-check-42") {
            break l;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["request_id"], "log-check-42");
    assert_eq!(v["route"], "config");
    assert_eq!(v["status"], 200);
    assert!(v["latency_ms"].is_number());
    assert!(!line.contains(&tok), "the token is never logged");
}
