//! Real calls through signalgrid in real headless Chromium (Debian's `/usr/bin/chromium`,
//! driven by playwright-core from tests/browser/, both installed by scripts/test.sh).
//!
//! This test starts the nodes (one standalone node, and two nodes of a cluster over a real
//! nats-server), a real nginx with the shipped configuration (deploy/nginx/signalgrid.conf,
//! tests/common/nginx.rs) in front of node-a and node-b, makes the sessions, and runs
//! tests/browser/e2e.mjs, which opens the call pages, and prints what it observed as one JSON
//! line; the assertions are here.
//!
//! Through nginx (round robin, no sticky sessions; issue 13 item 1): (b), the waiting room
//! and the drain's resume. Their pages are loaded from nginx, and their REST calls and
//! sockets go to it; each page reports its origin (nginx's), its socket's URL (nginx's) and
//! its node (the `connected` frame's `nodeId`), and the two parties' sockets are on two
//! different nodes. Which node a socket lands on is steered, not left to chance: a call page
//! makes a fixed number of requests before its socket, so e2e.mjs sends one request through
//! nginx (`GET /healthz`, which names the node that answered) just before opening a page, and
//! a second one when the socket would otherwise land on the wrong node (learned from the first
//! page); a page that still lands wrong leaves and is opened again (at most 4 tries).
//!
//! Scenarios:
//!   (a) client and psychologist on one node: both peer connections reach `connected`, each
//!       side decodes the other's video (framesDecoded > 0 and growing, per getStats);
//!   (c) the client turns its camera off and on, then shares its screen: the psychologist
//!       keeps decoding video; the end of the call is stored;
//!   (e) a session two hours away: the page shows the friendly reason and never makes an
//!       RTCPeerConnection;
//!   the token handed over by postMessage to an embedded page;
//!   a Group session with three people (client, psychologist, a supervising admin): every
//!   page connects to both others and shows both; when one leaves, the others drop its tile;
//!   the client's browser refuses camera and microphone: the page says why, joins anyway
//!   and shows the psychologist (receive only);
//!   a page of another origin loads the client library and calls the REST API (CORS), and
//!   a node that does not allow that origin is blocked by the browser;
//!   (b) the two pages on two different nodes of a cluster, through nginx (the session's
//!       time runs out soon: both pages show the session-ending notice);
//!   the waiting room (PROTOCOL.md section 8), through nginx, the psychologist's socket on
//!   one node and the client's on the other (both still there after the call): the
//!   client's page shows the lobby naming the psychologist and has made no RTCPeerConnection;
//!   the psychologist's page shows the admit panel; Deny: the client's page shows the
//!   refusal, still with no RTCPeerConnection; Ask again, then Admit: the call connects
//!   (video decoded both ways); a chat message reaches the other page (unread count while
//!   its panel is closed; shown as text, never HTML) and back; the client's mute and camera
//!   off show as badges on the psychologist's page;
//!   (d) resume, not rejoin: the client's node drains (through nginx: the client's socket
//!       on node-a, the psychologist's on node-b; node-a shuts down gracefully and the
//!       client resumes through nginx, which sends it to node-b), is killed with SIGKILL (a
//!       real node process), or the client's page goes offline (CDP network emulation, and
//!       its link to the node is cut: tests/common/link.rs) until that node's heartbeat gives
//!       the socket up (these two: the client's page lists the psychologist's node in
//!       `?signaling=`, no nginx: the killed node is a process of its own, and the offline
//!       page needs its own cuttable link to one node). Each time the
//!       client resumes its seat (same socket id, no rejoin), both pages keep the same
//!       RTCPeerConnection (none is made) and keep decoding video, and the psychologist's
//!       page never sees the client leave.
//! Screenshots of every page go to target/browser-screenshots/.

#[path = "common/call.rs"]
mod call_support;
#[path = "browser/checks.rs"]
mod checks;
#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/link.rs"]
mod link;
#[path = "common/nginx.rs"]
mod nginx;
#[path = "common/proc.rs"]
mod proc;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use checks::{connected_call, frames_grow};
use cluster_support::{node, NatsServer};
use common::*;
use link::Link;
use nginx::Nginx;
use proc::{cmd, NodeProc};
use serde_json::{json, Value};
use signalgrid_actors::identity::Role;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// A chat line with markup in it: the other page must show it as text.
const CHAT_TEXT: &str = "Hello Alice <b>welcome</b> & <img src=x onerror=alert(1)>";

/// Bound of the whole browser run (a hang guard, not a timing assertion).
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn chromium() -> PathBuf {
    let p = std::env::var_os("SIGNALGRID_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        p.exists(),
        "Chromium not found at {}: run scripts/test.sh (it installs Debian's chromium) or set SIGNALGRID_CHROMIUM",
        p.display()
    );
    p
}

fn browser_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        d.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}: run scripts/test.sh (npm ci there)",
        d.display()
    );
    d
}

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("browser-screenshots")
}

async fn session(n: &TestNode, client: &str, psy: &str, starts_in: i64) -> String {
    let spec = SessionSpec { client: client.into(), psychologist: psy.into(), starts_in, ..Default::default() };
    n.create_session(&spec).await["id"].as_str().unwrap().to_owned()
}

fn page(n: &TestNode, session: &str, user: &str, role: Role, name: &str, extra: &str) -> String {
    page_at(n.addr, session, user, role, name, extra)
}

/// The call page served at `addr` (a node, a node process, or a link to a node).
fn page_at(addr: impl std::fmt::Display, session: &str, user: &str, role: Role, name: &str, extra: &str) -> String {
    format!("http://{addr}/call/{session}?token={}&name={name}{extra}", token(user, role))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_headless_chromium() {
    let chromium = chromium();
    let dir = browser_dir();
    let out = out_dir();
    let _ = std::fs::remove_dir_all(&out);

    // One standalone node: (a), (c), (e), embedding.
    let single = TestNode::start().await;
    let call = session(&single, "client-1", "psy-1", 0).await;
    let early = session(&single, "client-2", "psy-2", 120).await;
    let embed = session(&single, "client-3", "psy-3", -5).await;
    let denied = session(&single, "client-5", "psy-5", 0).await;
    let group = single
        .create_session(&SessionSpec {
            client: "client-6".into(),
            psychologist: "psy-6".into(),
            session_type: "Group",
            ..Default::default()
        })
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_origin = session(&single, "client-4", "psy-4", 0).await;
    let guarded = TestNode::start_with(|s| s.allowed_origins = vec!["https://platform.example".into()]).await;

    // Nodes of one cluster: (b) on node-a and node-b; (d) the client on node-a (drained),
    // node-k (a real process, killed) or node-h (a 1 s heartbeat: an offline page's socket is
    // given up within seconds), the psychologist on node-b.
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let na = node(&nats.url(), "browser", &data, "node-a").await;
    let nb = node(&nats.url(), "browser", &data, "node-b").await;
    let mut nk = {
        let mut c = cmd(data.path());
        c.env("SIGNALGRID_PRESENCE_MS", "200").env("SIGNALGRID_DEAD_AFTER_MS", "1500");
        NodeProc::serve_with(c, &["--nats-url", &nats.url(), "--cluster", "browser", "--node-id", "node-k"])
    };
    let nats_url = nats.url();
    let nh = TestNode::start_in(data.clone(), move |s| {
        s.cluster.nats_url = Some(nats_url);
        s.cluster.name = "browser".into();
        s.cluster.presence_ms = 200;
        s.cluster.dead_after_ms = 1_500;
        s.node_id = Some("node-h".into());
        s.limits.heartbeat_ms = 1_000;
    })
    .await;
    // Its window (50 minutes, then 30 of grace) ends in 8 minutes: past the 10-minute warning,
    // so each member gets `session-ending` as it joins (more than the run's bound away).
    let cross = session(&na, "client-b", "psy-b", -72).await;
    let waiting_spec = SessionSpec { client: "client-w".into(), psychologist: "psy-w".into(), ..Default::default() };
    let (waiting, _) = call_support::session_with(&na, &waiting_spec, true).await;
    let drained = session(&na, "client-d", "psy-d", 0).await;
    let killed = session(&nb, "client-k", "psy-k", 0).await;
    let offline = session(&nb, "client-o", "psy-o", 0).await;
    let via_b = format!("&signaling=http://{}", nb.addr);
    // nginx with the shipped configuration in front of node-a and node-b (round robin, no
    // sticky sessions): (b), the waiting room and the drain's resume go through it.
    let lb = Nginx::start(&[na.addr, nb.addr]);
    let lb_addr = format!("127.0.0.1:{}", lb.port);
    let lb_plan = json!({ "base": lb.http("") });
    // The offline page reaches node-h through a link the harness unplugs.
    let link = Link::to(nh.addr).await;

    let plan = json!({
        "chromium": chromium,
        "outDir": out,
        "timeoutMs": 30000,
        "call": {
            "clientUrl": page(&single, &call, "client-1", Role::Client, "Alice", ""),
            "psyUrl": page(&single, &call, "psy-1", Role::Psychologist, "Dr.%20Bob", ""),
        },
        "early": { "url": page(&single, &early, "client-2", Role::Client, "Carol", "") },
        "embed": {
            "hostUrl": single.url("/healthz"),
            "callPath": format!("/call/{embed}"),
            "token": token("client-3", Role::Client),
        },
        "group": {
            "urls": [
                page(&single, &group, "client-6", Role::Client, "Alice", ""),
                page(&single, &group, "psy-6", Role::Psychologist, "Dr.%20Bob", ""),
                page(&single, &group, "supervisor-6", Role::Admin, "Supervisor%20Sue", ""),
            ],
        },
        "denied": {
            "clientUrl": page(&single, &denied, "client-5", Role::Client, "Alice", ""),
            "psyUrl": page(&single, &denied, "psy-5", Role::Psychologist, "Dr.%20Bob", ""),
        },
        "crossOrigin": {
            // node-b's origin plays the platform's: another port is another origin.
            "hostUrl": nb.url("/healthz"),
            "apiBase": format!("http://{}", single.addr),
            "refusedBase": format!("http://{}", guarded.addr),
            "token": token("client-4", Role::Client),
            "sessionId": other_origin,
        },
        "cluster": {
            "clientUrl": page_at(&lb_addr, &cross, "client-b", Role::Client, "Alice", ""),
            "psyUrl": page_at(&lb_addr, &cross, "psy-b", Role::Psychologist, "Dr.%20Bob", ""),
            "lb": lb_plan,
        },
        "waitingRoom": {
            "clientUrl": page_at(&lb_addr, &waiting, "client-w", Role::Client, "Alice", ""),
            "psyUrl": page_at(&lb_addr, &waiting, "psy-w", Role::Psychologist, "Dr.%20Bob", ""),
            "lb": lb_plan,
            // The session's psychologist (SessionSpec::body), as the lobby names them.
            "hostName": "Dr. Psy",
            "chatText": CHAT_TEXT,
            "replyText": "Thank you, I can hear you",
        },
        "resumeDrain": {
            // Through nginx, no `?signaling=` list: the resume goes through nginx too.
            "clientUrl": page_at(&lb_addr, &drained, "client-d", Role::Client, "Alice", ""),
            "psyUrl": page_at(&lb_addr, &drained, "psy-d", Role::Psychologist, "Dr.%20Bob", ""),
            "node": "node-a",
            "lb": lb_plan,
        },
        "resumeKill": {
            "clientUrl": page_at(&nk.addr, &killed, "client-k", Role::Client, "Alice", &via_b),
            "psyUrl": page(&nb, &killed, "psy-k", Role::Psychologist, "Dr.%20Bob", ""),
            "node": "node-k",
        },
        "resumeOffline": {
            "clientUrl": page_at(link.addr, &offline, "client-o", Role::Client, "Alice", &via_b),
            "psyUrl": page(&nb, &offline, "psy-o", Role::Psychologist, "Dr.%20Bob", ""),
            "node": "node-h",
        },
    });
    let plan_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(plan_file.path(), plan.to_string()).unwrap();

    let node_bin = std::env::var("SIGNALGRID_NODE").unwrap_or_else(|_| "node".into());
    let mut child = tokio::process::Command::new(node_bin)
        .arg(dir.join("e2e.mjs"))
        .arg(plan_file.path())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node (Node.js 18 or newer)");
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut to_drain = Some(na);
    let mut drains = Vec::new();
    let mut killed_once = false;
    let result = tokio::time::timeout(RUN_LIMIT, async {
        while let Some(line) = lines.next_line().await.expect("read e2e.mjs output") {
            if let Some(which) = line.strip_prefix("DRAIN ") {
                assert_eq!(which, "node-a");
                let n = to_drain.take().expect("node-a drained once");
                // A graceful shutdown: NODE_DRAINING to its clients, close 1012.
                drains.push(tokio::spawn(n.stop()));
            } else if let Some(which) = line.strip_prefix("KILL ") {
                assert_eq!(which, "node-k");
                assert!(!std::mem::replace(&mut killed_once, true), "node-k killed once");
                // SIGKILL: no close frame, no hand-over; the others find it dead.
                nk.kill9();
            } else if let Some(which) = line.strip_prefix("UNPLUG ") {
                assert_eq!(which, "node-h");
                link.unplug();
            } else if let Some(which) = line.strip_prefix("PLUG ") {
                assert_eq!(which, "node-h");
                link.plug();
            } else if line.starts_with('{') {
                return Some(serde_json::from_str::<Value>(&line).expect("result JSON"));
            }
        }
        None
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let log = tokio::time::timeout(Duration::from_secs(5), log).await.ok().and_then(Result::ok).unwrap_or_default();
    let r = match result {
        Ok(Some(r)) => r,
        Ok(None) => panic!("e2e.mjs ended without a result\n{log}"),
        Err(_) => panic!("browser run exceeded {RUN_LIMIT:?}\n{log}"),
    };
    for d in drains {
        d.await.unwrap();
    }
    println!("browser result: {r:#}");
    println!("nginx error log:\n{}", lb.error_log());
    assert!(r["ok"] == true, "browser scenarios failed: {:#}\n{log}", r["failures"]);
    let sc = &r["scenarios"];

    // (a) one node: connected both ways, video decoded both ways.
    connected_call(&sc["call"], "one node");
    assert_eq!(sc["call"]["client"]["created"], 1, "one peer connection per remote participant");

    // (c) camera off/on, then a screen share: the other side keeps decoding.
    let t = &sc["call"]["toggle"];
    assert!(
        !t["sendersWhileCameraOff"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().starts_with("video:")),
        "no video sent with the camera off: {t}"
    );
    frames_grow(&t["framesAfterCameraOn"], "after camera on");
    assert!(
        t["sendersWhileSharing"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().starts_with("video:screen")),
        "the screen is sent: {t}"
    );
    let f: Vec<u64> = t["framesAfterShare"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert!(f[1] > f[0] && f[2] > f[1], "frames keep coming during the share: {f:?}");
    assert_eq!(t["mutedButton"], "false");
    // The end of the call, from the page's End button, is stored.
    assert_eq!(sc["call"]["ended"]["client"], "Call ended");
    assert_eq!(sc["call"]["ended"]["psychologist"], "Call ended");
    let s: Value =
        single.get(&format!("/api/sessions/{call}"), Some(&admin())).send().await.unwrap().json().await.unwrap();
    assert_eq!(s["status"], "Completed", "{s}");
    assert!(s["videoCallStarted"].is_string() && s["videoCallEnded"].is_string(), "{s}");

    // (e) outside the time window: the reason, and no peer connection at all.
    let e = &sc["early"];
    assert_eq!(e["status"], "refused", "{e}");
    assert_eq!(e["created"], 0, "no RTCPeerConnection: {e}");
    assert_eq!(e["hasGetUserMediaRun"], false, "no camera before a yes: {e}");
    assert_eq!(e["errors"][0]["code"], "OUTSIDE_TIME_WINDOW", "{e}");
    let text = e["errors"][0]["text"].as_str().unwrap();
    assert!(text.contains("Too early") && text.contains("starts in 2 hours"), "{text}");

    // The token by postMessage: the embedded page joins its room.
    let em = &sc["embed"];
    assert_eq!(em["clientState"], "joined", "{em}");
    assert!(em["messages"].as_array().unwrap().iter().any(|m| m == "signalgrid:ready"), "{em}");
    // ...and after its socket drops (closed without a status code: not a departure), it
    // resumes its seat: the same socket id, no join again.
    let ev: Vec<&str> = em["reconnect"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(ev.first(), Some(&"NETWORK_ERROR"), "{em}");
    assert!(ev.contains(&"reconnecting") && ev.contains(&"resumed"), "{em}");
    assert!(!ev.contains(&"rejoined"), "resumed, not joined again: {em}");
    assert_eq!(em["socketIds"][0], em["socketIds"][1], "the same seat: {em}");

    // A Group session: a full mesh of three, each page showing both others by name.
    let g = &sc["group"];
    let names = ["Alice", "Dr. Bob", "Supervisor Sue"];
    for (i, p) in g["pages"].as_array().unwrap_or_else(|| panic!("{g}")).iter().enumerate() {
        let mut shown: Vec<&str> = p["tiles"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        shown.sort();
        let others: Vec<&str> = names.iter().enumerate().filter(|(k, _)| *k != i).map(|(_, n)| *n).collect();
        assert_eq!(shown, others, "page {i} shows both others: {p}");
        assert!(p["tiles"].as_array().unwrap().iter().all(|t| t["width"].as_u64().unwrap() > 0), "page {i}: {p}");
        assert_eq!(p["perPc"].as_array().unwrap().len(), 2, "one peer connection per other participant: {p}");
        for (k, f) in p["laterFrames"].as_array().unwrap().iter().enumerate() {
            assert!(f.as_u64().unwrap() > p["perPc"][k]["framesDecoded"].as_u64().unwrap(), "page {i}: {p}");
        }
    }
    for a in g["afterLeave"].as_array().unwrap() {
        assert_eq!(a["tiles"].as_array().unwrap().len(), 1, "the leaver's tile is gone: {g}");
    }

    // Camera and microphone refused: the friendly reason, nothing sent, the other one seen.
    let dn = &sc["denied"];
    let errors = dn["client"]["errors"].as_array().unwrap();
    let reason = errors.iter().find(|e| e["code"] == "MEDIA_PERMISSION_DENIED").unwrap_or_else(|| panic!("{dn}"));
    assert!(reason["text"].as_str().unwrap().contains("Allow camera and microphone"), "{dn}");
    assert_eq!(dn["client"]["senders"], json!([]), "nothing to send: {dn}");
    assert_eq!(dn["client"]["localVideo"], false, "{dn}");
    // The buttons offer what is possible: turning the camera on (which asks again), no mute.
    let buttons = &dn["client"]["buttons"];
    assert_eq!(buttons["btn-video"], json!({"text": "Camera on", "disabled": false}), "{dn}");
    assert_eq!(buttons["btn-audio"], json!({"text": "No microphone", "disabled": true}), "{dn}");
    assert!(dn["client"]["states"].as_array().unwrap().iter().any(|x| x == "connected"), "{dn}");
    frames_grow(&dn["client"]["framesDecoded"], "camera refused, the psychologist is seen");
    assert!(dn["psychologist"]["states"].as_array().unwrap().iter().any(|x| x == "connected"), "{dn}");

    // Cross-origin: the module and the REST calls work from another origin; a node whose
    // allow-list does not name that origin is blocked by the browser itself.
    let x = &sc["crossOrigin"];
    assert_eq!(x["canJoin"], true, "{x}");
    assert!(x["iceServers"].as_u64().unwrap_or(0) > 0, "{x}");
    assert_eq!(x["refused"], "NETWORK_ERROR", "{x}");
    assert_eq!(x["origin"], format!("http://{}", nb.addr), "{x}");

    // (b) two nodes of a cluster, both pages through nginx.
    checks::two_nodes(&sc["cluster"], &lb);
    // The waiting room across two nodes, through nginx.
    checks::waiting_room(&sc["waitingRoom"], &lb, CHAT_TEXT);
    for name in ["waiting-lobby-client", "waiting-admit-panel-psychologist", "waiting-denied-client"] {
        println!("screenshot: {}", out.join(format!("{name}.png")).display());
    }

    // (d) resume, not rejoin: drained (through nginx), killed, offline.
    checks::resumes(sc, &lb);

    for name in [
        "call-client",
        "call-psychologist",
        "call-client-sharing",
        "call-psychologist-receiving-screen",
        "call-ended",
        "call-too-early",
        "call-embedded",
        "call-camera-denied",
        "group-client",
        "cluster-client",
        "cluster-psychologist",
        "waiting-lobby-client",
        "waiting-admit-panel-psychologist",
        "waiting-denied-client",
        "waiting-chat-unread-client",
        "waiting-chat-client",
        "waiting-badges-psychologist",
        "resume-drain-client-after",
        "resume-kill-client-after",
        "resume-offline-client-after",
    ] {
        let p = out.join(format!("{name}.png"));
        assert!(std::fs::metadata(&p).map(|m| m.len() > 0).unwrap_or(false), "screenshot {}", p.display());
    }
    drop(lb);
    drop(link);
    drop(nh);
    drop(nb);
    drop(nk);
    drop(nats);
}

/// The library's pure parts in Node (backoff with jitter, quality verdict, typed errors), and
/// every error code the server has (actors/src/errors.rs) in the library's `ERROR_CODES`.
#[tokio::test]
async fn client_library_units_and_every_error_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node_bin = std::env::var("SIGNALGRID_NODE").unwrap_or_else(|_| "node".into());
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(node_bin).arg(dir.join("unit.mjs")).kill_on_drop(true).output(),
    )
    .await
    .expect("unit.mjs finishes")
    .expect("run node (Node.js 20 or newer)");
    let text = String::from_utf8_lossy(&out.stdout);
    let r: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("unit.mjs output: {e}\n{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(r["ok"], true, "{:#}", r["failures"]);

    let known: Vec<&str> = r["errorCodes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("actors/src/errors.rs")).unwrap();
    let mut server_codes = Vec::new();
    for line in src.lines() {
        if let Some((_, rest)) = line.split_once("=> \"") {
            let code = rest.split('"').next().unwrap();
            if !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                server_codes.push(code.to_owned());
            }
        }
    }
    assert!(server_codes.len() >= 20, "codes read from errors.rs: {server_codes:?}");
    for code in &server_codes {
        assert!(known.contains(&code.as_str()), "{code} is not in ERROR_CODES of web/signalgrid-errors.js");
    }
}
