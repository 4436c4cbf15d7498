//! Resume test support (PROTOCOL.md section 6): the checks a resumed or refused `connected`
//! must pass, the peer's view of an away seat, and numbered relays whose arrival (once, in
//! order, with consecutive `seq`) a test can verify.
#![allow(dead_code)]

use serde_json::{json, Value};

use super::{Seat, WsClient};

/// Dotted setting of the resume window (env `SIGNALGRID_RESUME_WINDOW_MS`), in ms.
pub const WINDOW_KEY: &str = "resume.window_ms";
/// Environment variable of the resume window for node processes.
pub const WINDOW_ENV: &str = "SIGNALGRID_RESUME_WINDOW_MS";
/// Dotted setting of the bound on frames kept for an away seat: past it, a resume fails
/// with `overflow`. The contract names no key; this name is the tests' proposal.
pub const BUFFER_KEY: &str = "resume.buffer_frames";

/// `c` is `seat` resumed: same socket id, `resumed: true`, `lost` as given, a new resume
/// token.
pub fn assert_resumed(c: &WsClient, seat: &Seat, lost: bool) {
    let h = &c.hello;
    assert_eq!(h["resumed"], true, "the resume failed: {h}");
    assert_eq!(h["lost"], lost, "{h}");
    assert_eq!(c.socket_id, seat.socket_id, "a resume keeps the socket id: {h}");
    let t = h["resumeToken"].as_str().unwrap_or_else(|| panic!("no resumeToken: {h}"));
    assert!(!t.is_empty() && t != seat.resume_token, "each connected brings a new token: {h}");
    assert!(h.get("seq").is_none(), "connected carries no seq: {h}");
}

/// Resumes `seat` at `base` and checks the resume succeeded (`lost` as given).
pub async fn resume_ok(base: &str, seat: &Seat, lost: bool) -> WsClient {
    let c = WsClient::resume(base, seat).await;
    assert_resumed(&c, seat, lost);
    c
}

/// Resumes `seat` at `base`, which must fail: `connected` with a new socket id and
/// `resumed: false`, then `error RESUME_FAILED` with `details.reason == reason` as the new
/// seat's first frame (seq 1). Returns the new connection.
pub async fn resume_fails(base: &str, seat: &Seat, reason: &str) -> WsClient {
    let mut c = WsClient::resume(base, seat).await;
    assert_eq!(c.hello["resumed"], false, "{}", c.hello);
    assert_ne!(c.socket_id, seat.socket_id, "a failed resume gets a new socket id");
    let (e, seq) = c.next_seq("error").await;
    assert_eq!(e["code"], "RESUME_FAILED", "{e}");
    assert_eq!(e["details"]["reason"], reason, "{e}");
    assert!(e["message"].is_string(), "{e}");
    assert_eq!(seq, 1, "the new seat's first frame");
    c
}

/// `peer`'s next frame is `event` (`user-reconnecting`, `user-reconnected`, `user-left`)
/// about `socket_id` of `user_id`, with a `seq`; returns its data.
pub async fn peer_hears(peer: &mut WsClient, event: &str, socket_id: &str, user_id: &str) -> Value {
    let (d, _) = peer.next_seq(event).await;
    assert_eq!(d["socketId"], socket_id, "{event}: {d}");
    assert_eq!(d["userId"], user_id, "{event}: {d}");
    d
}

/// `peer`'s next frame is `user-left` about `socket_id` with `reason`.
pub async fn peer_hears_left(peer: &mut WsClient, socket_id: &str, user_id: &str, reason: &str) {
    let d = peer_hears(peer, "user-left", socket_id, user_id).await;
    assert_eq!(d["reason"], reason, "{d}");
}

/// Sends `n` relays (`ice-candidate`, `candidate: {"tag": tag, "n": i}`) from `from` to
/// `to_socket` (which may be away).
pub async fn send_numbered(from: &mut WsClient, to_socket: &str, tag: &str, n: usize) {
    for i in 0..n {
        from.send("ice-candidate", json!({"candidate": {"tag": tag, "n": i}, "to": to_socket})).await;
    }
}

/// `c`'s next `n` frames are the relays `send_numbered(from, .., tag, n)` sent, in order,
/// with consecutive seqs right after `c.last_seq`; returns the seqs.
pub async fn receive_numbered(c: &mut WsClient, from: &str, tag: &str, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let before = c.last_seq;
        let (d, seq) = c.next_seq("ice-candidate").await;
        assert_eq!((d["candidate"]["tag"].as_str(), d["candidate"]["n"].as_u64()), (Some(tag), Some(i as u64)), "{d}");
        assert_eq!(d["from"], from, "{d}");
        assert_eq!(seq, before + 1, "seqs are consecutive");
        seqs.push(seq);
    }
    seqs
}

/// After a resume that found the old socket still open, the peer heard nothing, or
/// `user-reconnecting` then `user-reconnected` (PROTOCOL.md section 10); then `from`'s marker
/// is `peer`'s next frame.
pub async fn peer_hears_nothing_or_a_reconnect(peer: &mut WsClient, from: &mut WsClient, user_id: &str) {
    let id = from.socket_id.clone();
    let peer_id = peer.socket_id.clone();
    from.send("ice-candidate", json!({"candidate": {"marker": "after-resume"}, "to": peer_id})).await;
    let mut v = peer.next().await;
    if v["event"] == "user-reconnecting" {
        assert_eq!((v["data"]["socketId"].as_str(), v["data"]["userId"].as_str()), (Some(id.as_str()), Some(user_id)));
        peer_hears(peer, "user-reconnected", &id, user_id).await;
        v = peer.next().await;
    }
    assert_eq!(v["event"], "ice-candidate", "{v}");
    assert_eq!(v["data"]["candidate"]["marker"], "after-resume", "{v}");
    assert_eq!(v["data"]["from"], id.as_str(), "{v}");
}

/// `token` with one character in the middle changed (a forged token).
pub fn forged(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}
