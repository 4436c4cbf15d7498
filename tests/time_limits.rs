//! Time limits during a call (PROTOCOL.md sections 8 and 10), on one node (scripts/test.sh
//! runs this file again on MongoDB): a session a few seconds from the end of its window
//! (test settings: no grace, one minute long): members joining after the last warning's
//! time get one `session-ending` with the current `minutesLeft` at once, and are removed at
//! the window's end with `OUTSIDE_TIME_WINDOW` (close 4003, `user-left` reason `ejected`);
//! an admin stays where `rooms.admin_bypass` says so, unwarned; with
//! `rooms.enforce_window_end = false` nobody is warned or removed. The warning that comes
//! due during a call, across nodes, is in tests/server_api.rs.

mod common;
#[path = "common/server_api.rs"]
mod server_api;

use common::*;
use serde_json::json;
use server_api::*;
use signalgrid_actors::identity::Role;

#[tokio::test]
async fn members_are_warned_then_removed_when_the_window_ends() {
    let node = TestNode::start_with(|s| {
        s.rooms.grace_minutes = 0;
        s.rooms.admin_bypass = true;
    })
    .await;
    let (_, room) = session_and_room(&node, ending_in(6, "Group")).await;
    let mut client = WsClient::connect(&node, &client_token()).await;
    client.join(&room).await;
    assert_eq!(client.next_event("session-ending").await, json!({ "minutesLeft": 1 }));
    let mut psy = WsClient::connect(&node, &psy_token()).await;
    psy.join(&room).await;
    assert_eq!(psy.next_event("session-ending").await, json!({ "minutesLeft": 1 }));
    assert_eq!(client.next_event("user-joined").await["socketId"], psy.socket_id.as_str());
    let mut ops = WsClient::connect(&node, &token("ops-1", Role::Admin)).await;
    ops.join(&room).await;
    for ws in [&mut client, &mut psy] {
        ws.next_event("user-joined").await;
    }
    for ws in [&mut client, &mut psy] {
        let frames = removed_with(ws, "OUTSIDE_TIME_WINDOW", "ejected").await;
        assert!(!frames.iter().any(|f| f["event"] == "session-ending"), "warned twice: {frames:?}");
    }
    // The exempt admin was not warned, hears both leave as ejected, and stays.
    let mut left = Vec::new();
    for _ in 0..2 {
        let l = ops.next_event("user-left").await;
        assert_eq!(l["reason"], "ejected", "{l}");
        left.push(l["socketId"].as_str().unwrap().to_owned());
    }
    assert_eq!(sorted(left), sorted(vec![client.socket_id.clone(), psy.socket_id.clone()]));
    let (_, shown) = api(&node, "GET", &format!("/api/rooms/{room}"), None, None).await;
    assert_eq!(shown["participants"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown["participants"][0]["socketId"], ops.socket_id.as_str());
}

#[tokio::test]
async fn with_enforcement_off_the_call_runs_on() {
    let node = TestNode::start_with(|s| {
        s.rooms.grace_minutes = 0;
        s.rooms.enforce_window_end = false;
    })
    .await;
    let ends = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    let (_, room) = session_and_room(&node, ending_in(3, "Individual")).await;
    let (mut client, mut psy) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    // Past the window's end (waiting for the clock, not for an event): nothing came, both
    // are still in the call.
    tokio::time::sleep_until(ends + std::time::Duration::from_millis(1500)).await;
    marker(&mut client, &mut psy, "still-here-1").await;
    marker(&mut psy, &mut client, "still-here-2").await;
}
