use super::*;
use crate::errors::ErrorCode;
use serde_json::Value;

#[test]
fn relays_keep_payload_verbatim() {
    let frame = r#"{"event":"offer","data":{"offer":{"type":"offer","sdp":"v=0\r\n","x-extra":[1,2]},"to":"abc"}}"#;
    let ClientEvent::Relay { kind, payload, to } = decode(frame).unwrap() else { panic!() };
    assert_eq!(kind, RelayKind::Offer);
    assert_eq!(to, "abc");
    assert_eq!(payload.get(), r#"{"type":"offer","sdp":"v=0\r\n","x-extra":[1,2]}"#);
    let out = relay_frame(kind, payload.get(), "me");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["event"], "offer");
    assert_eq!(v["data"]["from"], "me");
    assert_eq!(v["data"]["offer"]["x-extra"][1], 2);
}

#[test]
fn null_candidate_is_relayed_as_null() {
    let ClientEvent::Relay { payload, .. } =
        decode(r#"{"event":"ice-candidate","data":{"candidate":null,"to":"x"}}"#).unwrap()
    else {
        panic!()
    };
    assert_eq!(payload.get(), "null");
    let v: Value = serde_json::from_str(&relay_frame(RelayKind::IceCandidate, payload.get(), "f")).unwrap();
    assert!(v["data"]["candidate"].is_null());
}

#[test]
fn errors_are_classified() {
    let cases = [
        ("not json", ErrorCode::BadRequest),
        ("[1,2]", ErrorCode::BadRequest),
        (r#"{"data":{}}"#, ErrorCode::BadRequest),
        (r#"{"event":"offer","data":{"to":"x"}}"#, ErrorCode::BadRequest),
        (r#"{"event":"offer","data":{"offer":{},"to":5}}"#, ErrorCode::BadRequest),
        (r#"{"event":"join-room"}"#, ErrorCode::BadRequest),
        (r#"{"event":"join-room","data":{"roomId":""}}"#, ErrorCode::BadRequest),
        (r#"{"event":"dance","data":{}}"#, ErrorCode::UnknownEvent),
    ];
    for (frame, code) in cases {
        assert_eq!(decode(frame).unwrap_err().code(), code, "{frame}");
    }
}

#[test]
fn join_and_call_ended_decode() {
    match decode(r#"{"event":"join-room","data":{"roomId":"r1","userName":"Ann","userId":"ignored"}}"#).unwrap() {
        ClientEvent::JoinRoom { room_id, user_name } => {
            assert_eq!(room_id, "r1");
            assert_eq!(user_name.as_deref(), Some("Ann"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode(r#"{"event":"call-ended","data":{"roomId":"r1","duration":999}}"#).unwrap(),
        ClientEvent::CallEnded { room_id } if room_id == "r1"
    ));
}

#[test]
fn server_frames_have_the_contract_shape() {
    let v: Value = serde_json::from_str(&ServerFrame::error(ErrorCode::RoomFull, serde_json::json!({}))).unwrap();
    assert_eq!(v["event"], "error");
    assert_eq!(v["data"]["code"], "ROOM_FULL");
    assert!(v["data"]["message"].is_string());
    assert!(v["data"]["details"].is_object());
    let p = Participant {
        socket_id: "s".into(),
        user_id: "u".into(),
        user_name: "n".into(),
        user_role: "client".into(),
        media_state: None,
    };
    let v: Value =
        serde_json::from_str(&ServerFrame::RoomJoined { room_id: "r", participants: &[p], waiting: None }.encode())
            .unwrap();
    assert_eq!(v["data"]["participants"][0]["socketId"], "s");
    assert_eq!(v["data"]["participants"][0]["userRole"], "client");
}

#[test]
fn chat_length_counts_code_points_and_media_state_wants_three_booleans() {
    let chat = |text: &str| decode(&serde_json::json!({"event": "chat-message", "data": {"text": text}}).to_string());
    assert!(matches!(chat(&"😀".repeat(CHAT_MAX_CHARS)), Ok(ClientEvent::ChatMessage { .. })));
    for bad in ["".to_owned(), "é".repeat(CHAT_MAX_CHARS + 1)] {
        let e = chat(&bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadRequest);
        assert!(!e.to_string().contains("éé"), "the text is not echoed: {e}");
    }
    let media = decode(r#"{"event":"media-state","data":{"audio":true,"video":false,"screen":false}}"#).unwrap();
    assert!(matches!(media, ClientEvent::MediaState(MediaState { audio: true, video: false, screen: false })));
    for bad in [r#"{"audio":1,"video":false,"screen":false}"#, r#"{"audio":true}"#, "null"] {
        let frame = format!(r#"{{"event":"media-state","data":{bad}}}"#);
        assert_eq!(decode(&frame).unwrap_err().code(), ErrorCode::BadRequest, "{bad}");
    }
    let admit = decode(r#"{"event":"admit","data":{"socketId":"s1"}}"#).unwrap();
    assert!(matches!(admit, ClientEvent::Admit { socket_id } if socket_id == "s1"));
}
