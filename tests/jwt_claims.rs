//! The registered JWT claims (RFC 7519 §4.1) on REST and on the WebSocket upgrade: each is
//! checked as docs/protocol.md ("Tokens") says, by a default node and by one with
//! `auth.audience` and `auth.issuer` set. A refusal is 401 `UNAUTHORIZED` in the contract's
//! error shape, its `details.reason` naming the claim.

mod common;
use common::*;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const CONFIG: &str = "/api/video-calls/config";
const AUDIENCE: &str = "signalgrid";
const ISSUER: &str = "https://platform.test";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(claims: Value) -> String {
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// A valid token's claims plus `extra` (a `null` value removes that claim).
fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "client-1", "role": "client", "iat": now(), "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// What a node must answer: accepted, or refused with a reason containing this text.
type Expect = Result<(), &'static str>;

/// The token is accepted on REST and on the upgrade, or refused on both with `reason`.
async fn check(node: &TestNode, name: &str, token: &str, expect: Expect) {
    // REST.
    let res = tokio::time::timeout(WAIT, node.get(CONFIG, Some(token)).send()).await.expect("answered").unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("JSON body");
    match expect {
        Ok(()) => assert_eq!(status, 200, "{name}: REST should accept: {body}"),
        Err(reason) => {
            assert_eq!(status, 401, "{name}: REST should refuse: {body}");
            assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{name}: {body}");
            let got = body["error"]["details"]["reason"].as_str().unwrap_or_default();
            assert!(got.contains(reason), "{name}: REST reason {got:?} should name {reason:?}");
        }
    }
    // The upgrade.
    match expect {
        Ok(()) => {
            let c = WsClient::connect(node, token).await;
            assert!(!c.socket_id.is_empty(), "{name}: connected");
            c.close().await;
        }
        Err(reason) => {
            let res = node
                .http
                .get(node.url("/ws"))
                .query(&[("token", token)])
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .send();
            let res = tokio::time::timeout(WAIT, res).await.expect("answered").unwrap();
            assert_eq!(res.status().as_u16(), 401, "{name}: upgrade should refuse");
            let body: Value = res.json().await.expect("JSON body");
            assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{name}: {body}");
            let got = body["error"]["details"]["reason"].as_str().unwrap_or_default();
            assert!(got.contains(reason), "{name}: upgrade reason {got:?} should name {reason:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_claims_on_rest_and_upgrade() {
    let node = TestNode::start().await; // leeway 30 s, the default
    let cases: Vec<(&str, Value, Expect)> = vec![
        ("valid", json!({}), Ok(())),
        ("exp missing", json!({"exp": null}), Err("exp")),
        ("exp passed", json!({"exp": now() - 3600}), Err("(exp)")),
        ("exp passed within the leeway", json!({"exp": now() - 5}), Ok(())),
        ("exp not a number", json!({"exp": "tomorrow"}), Err("exp")),
        ("nbf an hour ahead", json!({"nbf": now() + 3600}), Err("(nbf)")),
        ("nbf a year ahead", json!({"nbf": now() + 365 * 86_400}), Err("(nbf)")),
        ("nbf within the leeway", json!({"nbf": now() + 5}), Ok(())),
        ("nbf passed", json!({"nbf": now() - 60}), Ok(())),
        ("nbf not a number", json!({"nbf": "later"}), Err("nbf")),
        ("iat an hour ahead", json!({"iat": now() + 3600}), Err("(iat)")),
        ("iat within the leeway", json!({"iat": now() + 5}), Ok(())),
        ("iat a day ago", json!({"iat": now() - 86_400}), Ok(())),
        ("iat missing", json!({"iat": null}), Ok(())),
        ("iat not a number", json!({"iat": "now"}), Err("iat")),
    ];
    for (name, extra, expect) in cases {
        check(&node, name, &sign(claims(extra)), expect).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aud_and_iss_are_not_checked_when_unset() {
    let node = TestNode::start().await;
    let cases: Vec<(&str, Value, Expect)> = vec![
        ("aud string", json!({"aud": "some-platform-api"}), Ok(())),
        ("aud array", json!({"aud": ["a", "b"]}), Ok(())),
        ("iss", json!({"iss": "https://anyone.test"}), Ok(())),
        ("sub is the user", json!({"sub": "psy-7"}), Ok(())),
        ("no user id", json!({"sub": null}), Err("user id")),
    ];
    for (name, extra, expect) in cases {
        check(&node, name, &sign(claims(extra)), expect).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aud_and_iss_are_required_when_configured() {
    let node = TestNode::start_with(|s| {
        s.auth.audience = vec![AUDIENCE.into(), "video".into()];
        s.auth.issuer = vec![ISSUER.into()];
    })
    .await;
    let both = |extra: Value| {
        let mut c = claims(json!({"aud": AUDIENCE, "iss": ISSUER}));
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases: Vec<(&str, Value, Expect)> = vec![
        ("aud and iss match", both(json!({})), Ok(())),
        ("aud the second value", both(json!({"aud": "video"})), Ok(())),
        ("aud array naming one", both(json!({"aud": ["billing", AUDIENCE]})), Ok(())),
        ("aud another", both(json!({"aud": "billing"})), Err("(aud)")),
        ("aud array naming none", both(json!({"aud": ["billing", "chat"]})), Err("(aud)")),
        ("aud missing", claims(json!({"iss": ISSUER})), Err("aud")),
        ("iss another", both(json!({"iss": "https://evil.test"})), Err("(iss)")),
        ("iss missing", claims(json!({"aud": AUDIENCE})), Err("iss")),
        ("exp still checked", both(json!({"exp": now() - 3600})), Err("(exp)")),
        ("nbf still checked", both(json!({"nbf": now() + 3600})), Err("(nbf)")),
    ];
    for (name, extra, expect) in cases {
        check(&node, name, &sign(extra), expect).await;
    }
}
