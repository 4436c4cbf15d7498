mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn two_clients_meet_and_relay() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    a.join(&room).await;
    let joined = b.join(&room).await;
    assert_eq!(joined["participants"].as_array().unwrap().len(), 2);
    let uj = a.next_event("user-joined").await;
    assert_eq!(uj["socketId"], b.socket_id.as_str());
    b.send("offer", json!({"offer": {"type": "offer", "sdp": "x"}, "to": a.socket_id})).await;
    let o = a.next_event("offer").await;
    assert_eq!(o["from"], b.socket_id.as_str());
    assert_eq!(o["offer"]["sdp"], "x");
}
