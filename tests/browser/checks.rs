//! The checks of the browser test's cluster scenarios (tests/browser.rs): (b) across two
//! nodes, the waiting room, and (d) the resumes, on the JSON that tests/browser/e2e.mjs
//! prints; and the checks every call scenario shares (video decoded, path through nginx).

use serde_json::{json, Value};

use crate::nginx::Nginx;

/// `v`: video frames decoded, [then, later] (getStats): above 0 and growing.
pub fn frames_grow(v: &Value, what: &str) {
    let f = v.as_array().unwrap_or_else(|| panic!("{what}: {v}"));
    let (a, b) = (f[0].as_u64().unwrap(), f[1].as_u64().unwrap());
    assert!(a > 0 && b > a, "{what}: frames decoded {a} then {b}");
}

/// `v`: a two-party call's result; on both sides a peer connection `connected`, video frames
/// decoded and growing, and a quality badge shown.
pub fn connected_call(v: &Value, what: &str) {
    for side in ["client", "psychologist"] {
        let s = &v[side];
        assert!(s["states"].as_array().unwrap().iter().any(|x| x == "connected"), "{what} {side}: {s}");
        frames_grow(&s["framesDecoded"], &format!("{what} {side}"));
        assert!(
            ["good", "fair", "poor"].contains(&s["quality"].as_str().unwrap_or("")),
            "{what} {side}: quality badge {s}"
        );
    }
}

/// `via` ({client, psychologist}: {origin, wsUrl, node}, from the pages) shows both pages
/// served by nginx, both sockets opened to nginx, and the two sockets on two different nodes
/// of the two behind it (node-a, node-b).
pub fn through_nginx(via: &Value, lb: &Nginx, what: &str) {
    for side in ["client", "psychologist"] {
        let v = &via[side];
        assert_eq!(v["origin"], lb.http(""), "{what}: {side}'s page is served by nginx: {via}");
        assert!(
            v["wsUrl"].as_str().unwrap_or("").starts_with(&format!("{}/ws?", lb.ws())),
            "{what}: {side}'s socket goes to nginx: {via}"
        );
        assert!(["node-a", "node-b"].contains(&v["node"].as_str().unwrap_or("")), "{what}: {side}: {via}");
    }
    assert_ne!(via["client"]["node"], via["psychologist"]["node"], "{what}: the sockets on two nodes: {via}");
}

/// (b): `c` is the `cluster` scenario's result. Video both ways; both pages through nginx, on
/// two nodes; both pages show the session-ending notice (PROTOCOL.md, `session-ending`).
pub fn two_nodes(c: &Value, lb: &Nginx) {
    connected_call(c, "two nodes");
    through_nginx(&c["via"], lb, "cluster");
    for side in ["client", "psychologist"] {
        assert_eq!(c[side]["node"], c["via"][side]["node"], "{side}: still on the node it landed on: {c}");
    }
    for n in c["notices"].as_array().unwrap_or_else(|| panic!("{c}")) {
        let text = n["text"].as_str().unwrap();
        let minutes: i64 = text
            .strip_prefix("The session time ends in ")
            .and_then(|t| t.split(' ').next())
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("the session-ending notice: {c}"));
        assert!((1..=10).contains(&minutes), "{c}");
        assert_eq!(n["role"], "status", "{c}");
    }
}

/// The waiting room (PROTOCOL.md section 8): `w` is the `waitingRoom` scenario's result,
/// `chat_text` the line the psychologist sent.
pub fn waiting_room(w: &Value, lb: &Nginx, chat_text: &str) {
    let lobby = &w["lobby"];
    assert_eq!(lobby["state"], "waiting", "{w:#}");
    assert!(
        lobby["lobbyText"].as_str().unwrap().contains("Dr. Psy will let you in"),
        "the lobby names the psychologist: {w:#}"
    );
    assert_eq!(lobby["status"], "lobby", "{w:#}");
    assert_eq!(w["lobbyAfter"]["created"], 0, "a waiting client makes no RTCPeerConnection: {w:#}");
    let panel = &w["panel"];
    assert_eq!(panel["waitingNames"], json!(["Alice"]), "{w:#}");
    assert_eq!(panel["waitingCount"], "1", "{w:#}");
    assert_eq!(panel["panelLive"], "polite", "{w:#}");
    assert_eq!(panel["panelAnnounce"], "Alice is waiting to join", "{w:#}");
    assert_eq!(panel["created"], 0, "the psychologist alone: no RTCPeerConnection: {w:#}");
    let denied = &w["denied"];
    assert!(denied["lobbyShown"] == true && denied["askAgainShown"] == true, "{w:#}");
    assert!(denied["lobbyText"].as_str().unwrap().contains("did not let you into the call"), "{w:#}");
    assert_eq!(denied["created"], 0, "a denied client makes no RTCPeerConnection: {w:#}");
    assert_eq!(w["panelAfterDeny"]["panelShown"], false, "{w:#}");
    assert_eq!(w["beforeAdmit"]["created"], 0, "{w:#}");
    connected_call(w, "waiting room, admitted");
    assert_eq!(w["client"]["created"], 1, "one peer connection once admitted: {w:#}");
    through_nginx(&w["via"]["start"], lb, "waiting room, lobby");
    through_nginx(&w["via"]["end"], lb, "waiting room, after the call");
    for side in ["client", "psychologist"] {
        assert_eq!(w["via"]["start"][side]["node"], w["via"]["end"][side]["node"], "{side}: one socket: {w:#}");
    }
    assert_eq!(
        w["admitted"],
        json!([{"lobbyShown": false, "panelShown": false}, {"lobbyShown": false, "panelShown": false}])
    );
    let chat = &w["chat"];
    assert_eq!(chat["unread"]["unread"], 1, "unread count while closed: {w:#}");
    assert_eq!(chat["unread"]["expanded"], "false", "{w:#}");
    let got = chat["unread"]["lines"].as_array().unwrap();
    assert_eq!(got.len(), 1, "{w:#}");
    assert_eq!((got[0]["from"].as_str(), got[0]["text"].as_str()), (Some("Dr. Bob"), Some(chat_text)), "{w:#}");
    assert_eq!(chat["unread"]["elementsInTexts"], 0, "chat text is never HTML: {w:#}");
    assert_eq!(chat["opened"]["expanded"], "true", "{w:#}");
    assert_eq!(chat["opened"]["focused"], "chat-input", "opened from the keyboard, the input focused: {w:#}");
    assert_eq!(chat["opened"]["logLive"], "polite", "{w:#}");
    let psy_lines = chat["psychologist"]["lines"].as_array().unwrap();
    assert!(
        psy_lines.iter().any(|l| l["text"] == chat_text && l["state"] == "sent"),
        "the sender's line confirmed: {w:#}"
    );
    assert!(psy_lines.iter().any(|l| l["from"] == "Alice" && l["text"] == "Thank you, I can hear you"), "{w:#}");
    assert_eq!(w["badges"]["muted"], json!([{"name": "Alice", "muted": true, "cameraOff": false}]), "{w:#}");
    assert_eq!(w["badges"]["camOff"], json!([{"name": "Alice", "muted": true, "cameraOff": true}]), "{w:#}");
    assert_eq!(w["badges"]["unmuted"], json!([{"name": "Alice", "muted": false, "cameraOff": true}]), "{w:#}");
}

/// (d) resume, not rejoin: `sc` holds the `resumeDrain` (through nginx), `resumeKill` and
/// `resumeOffline` results.
pub fn resumes(sc: &Value, lb: &Nginx) {
    let seen = |v: &Value| -> Vec<String> {
        v["seen"].as_array().unwrap_or_else(|| panic!("{v}")).iter().map(|x| x.as_str().unwrap().to_owned()).collect()
    };
    for (key, node_before, node_after, lost) in [
        ("resumeDrain", "node-a", Some("node-b"), false),
        ("resumeKill", "node-k", Some("node-b"), true),
        ("resumeOffline", "node-h", None, false),
    ] {
        let d = &sc[key];
        connected_call(&d["call"], &format!("{key}: before"));
        assert_eq!(d["before"]["nodeId"], node_before, "{key}: {d}");
        let k = &d["checks"];
        assert_eq!(k["socketLost"], true, "{key}: the page lost its socket: {d}");
        assert_eq!(k["sameSocket"], true, "{key}: resumed with the same socket id: {d}");
        assert_eq!(k["clientNoRejoin"], true, "{key}: no join again: {d}");
        assert_eq!(k["clientSamePcs"], true, "{key}: the client kept its RTCPeerConnection, no new one: {d}");
        assert_eq!(k["psySamePcs"], true, "{key}: the psychologist kept its RTCPeerConnection, no new one: {d}");
        assert_eq!(k["psyNeverSawLeave"], true, "{key}: the psychologist never saw the client leave: {d}");
        let c_seen = seen(&d["client"]);
        assert!(c_seen.contains(&format!("resumed:{lost}")), "{key}: resumed with lost: {lost}: {d}");
        // The psychologist saw the client away, then back. A killed node's seat that resumes
        // before the cluster finds the node dead was never marked away: no pair then.
        let p_seen = seen(&d["psychologist"]);
        let (away, back) = (
            p_seen.iter().position(|x| x == "peer-reconnecting"),
            p_seen.iter().rposition(|x| x == "peer-reconnected"),
        );
        match (away, back) {
            (Some(a), Some(b)) => assert!(a < b, "{key}: away, then back: {d}"),
            (None, None) => assert_eq!(key, "resumeKill", "{key}: the psychologist saw the client away: {d}"),
            _ => panic!("{key}: the psychologist saw the client away and never back, or back unannounced: {d}"),
        }
        if let Some(n) = node_after {
            assert_eq!(d["client"]["nodeId"], n, "{key}: resumed on the other node: {d}");
        }
        for side in ["client", "psychologist"] {
            frames_grow(&d[side]["framesAfter"], &format!("{key}: after the resume, {side}"));
        }
    }
    // The drain's resume through nginx: node-a and node-b before, both on node-b after; nginx
    // sent the resuming socket to node-b (node-a refuses, or is gone).
    let v = &sc["resumeDrain"]["via"];
    through_nginx(&v["before"], lb, "resumeDrain: before");
    assert_eq!(v["before"]["client"]["node"], "node-a", "{v}");
    for side in ["client", "psychologist"] {
        let after = &v["after"][side];
        assert_eq!(after["origin"], lb.http(""), "resumeDrain: {side} after: {v}");
        assert!(after["wsUrl"].as_str().unwrap_or("").starts_with(&format!("{}/ws?", lb.ws())), "{side}: {v}");
        assert_eq!(after["node"], "node-b", "resumeDrain: {side} after: {v}");
    }
    let d = seen(&sc["resumeDrain"]["client"]);
    assert!(d.iter().any(|x| x == "error:NODE_DRAINING") && d.iter().any(|x| x == "socket-closed:1012"), "{d:?}");
    assert!(!seen(&sc["resumeKill"]["client"]).iter().any(|x| x == "error:NODE_DRAINING"), "killed, not drained");
}
