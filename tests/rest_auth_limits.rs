mod common;
use common::*;

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use signalgrid_actors::identity::Role;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

const CONFIG: &str = "/api/video-calls/config";

fn exp() -> i64 {
    chrono::Utc::now().timestamp() + 600
}

/// Every kind of bad token of the contract, with a name for messages. `None`: no token.
fn bad_tokens() -> Vec<(&'static str, Option<String>)> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg_none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(json!({"sub": "client-1", "role": "admin", "exp": exp()}).to_string())
    );
    let no_exp = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "client-1", "role": "client"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    vec![
        ("expired", Some(signalgrid::auth::mint(SECRET, "client-1", Role::Client, None, -3600))),
        (
            "other secret",
            Some(signalgrid::auth::mint("another-secret-not-the-server-one", "client-1", Role::Client, None, 600)),
        ),
        ("garbage", Some("garbage.token.value".into())),
        ("missing", None),
        ("alg none", Some(alg_none)),
        ("no exp", Some(no_exp)),
    ]
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    tokio::time::timeout(WAIT, req.send()).await.expect("request timed out").expect("request sent")
}

/// Checks the error shape of a response body; returns it.
fn check_shape(body: &Value, code: &str) {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["details"].is_object(), "{body}");
    assert!(body["error"]["timestamp"].is_string(), "{body}");
    assert!(body["error"]["requestId"].is_string(), "{body}");
}

async fn expect_code(res: reqwest::Response, status: u16, code: &str) -> reqwest::header::HeaderMap {
    assert_eq!(res.status().as_u16(), status, "expected {code}");
    let headers = res.headers().clone();
    let body: Value = res.json().await.expect("JSON error body");
    check_shape(&body, code);
    headers
}

#[tokio::test]
async fn rest_refuses_bad_tokens() {
    let node = TestNode::start().await;
    let (id, _) = node.call().await;
    let paths = [CONFIG.to_owned(), format!("/api/video-calls/can-join/{id}"), format!("/api/sessions/{id}")];
    for (name, tok) in bad_tokens() {
        for path in &paths {
            let res = send(node.get(path, tok.as_deref())).await;
            assert_eq!(res.status(), 401, "{name} token on {path}");
            expect_code(res, 401, "UNAUTHORIZED").await;
            if let Some(t) = &tok {
                let res = send(node.http.get(node.url(path)).header("authorization", format!("Bearer {t}"))).await;
                assert_eq!(res.status(), 401, "{name} bearer token on {path}");
                expect_code(res, 401, "UNAUTHORIZED").await;
            }
        }
    }
    // POSTs too.
    for (name, tok) in bad_tokens() {
        let res = send(node.post(&format!("/api/video-calls/start/{id}"), tok.as_deref())).await;
        assert_eq!(res.status(), 401, "{name} token on start");
    }
}

#[tokio::test]
async fn rest_accepts_both_headers_and_both_claim_shapes() {
    let node = TestNode::start().await;
    let (id, _) = node.call().await;
    let path = format!("/api/sessions/{id}");
    let res = send(node.get(&path, Some(&client_token()))).await;
    assert_eq!(res.status(), 200);
    let res = send(node.http.get(node.url(&path)).header("authorization", format!("Bearer {}", psy_token()))).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["id"], id.as_str());
    // The seed platform's shape: {"user": {"id": ...}}.
    let seed = encode(
        &Header::new(Algorithm::HS256),
        &json!({"user": {"id": "client-1", "role": "client", "name": "Ann"}, "exp": exp()}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let res = send(node.get(&path, Some(&seed))).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn websocket_upgrade_refuses_bad_tokens() {
    let node = TestNode::start().await;
    for (name, tok) in bad_tokens() {
        let url = match &tok {
            Some(t) => node.ws_url(t),
            None => format!("ws://{}/ws", node.addr),
        };
        let res = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await.expect("upgrade answered");
        match res {
            Err(WsError::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401, "{name}");
                // The body is whatever arrived with the headers; check it when it is whole.
                if let Some(Ok(v)) = resp.body().as_ref().map(|b| serde_json::from_slice::<Value>(b)) {
                    check_shape(&v, "UNAUTHORIZED");
                }
                // The full refusal, read as a plain HTTP response to an upgrade request.
                let mut req = node
                    .http
                    .get(node.url("/ws"))
                    .header("connection", "Upgrade")
                    .header("upgrade", "websocket")
                    .header("sec-websocket-version", "13")
                    .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
                if let Some(t) = &tok {
                    req = req.query(&[("token", t)]);
                }
                let res = send(req).await;
                expect_code(res, 401, "UNAUTHORIZED").await;
            }
            Err(e) => panic!("{name}: expected an HTTP 401, got {e}"),
            Ok(_) => panic!("{name}: the upgrade was accepted"),
        }
        // The same token in the x-auth-token header is refused too.
        if let Some(t) = &tok {
            let mut req = format!("ws://{}/ws", node.addr).into_client_request().unwrap();
            req.headers_mut().insert("x-auth-token", t.parse().unwrap());
            let res =
                tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.expect("upgrade answered");
            match res {
                Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 401, "{name}"),
                other => panic!("{name} in header: expected 401, got {:?}", other.err()),
            }
        }
    }
    // A good token in the header is accepted.
    let mut req = format!("ws://{}/ws", node.addr).into_client_request().unwrap();
    req.headers_mut().insert("x-auth-token", client_token().parse().unwrap());
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
        .expect("a valid header token is accepted");
    use futures_util::StreamExt;
    let first = tokio::time::timeout(WAIT, ws.next()).await.expect("first frame").unwrap().unwrap();
    let v: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(v["event"], "connected", "{v}");
}

#[tokio::test]
async fn rest_rate_limit_per_user_and_per_ip() {
    let node = TestNode::start_with(|s| s.limits.rest_per_minute = 3).await;
    let a = token("user-a", Role::Client);
    for i in 0..3 {
        let res = send(node.get(CONFIG, Some(&a))).await;
        assert_eq!(res.status(), 200, "request {} of user-a", i + 1);
    }
    let res = send(node.get(CONFIG, Some(&a)).header("x-request-id", "limited-1")).await;
    assert_eq!(res.headers().get("x-request-id").map(|v| v.to_str().unwrap()), Some("limited-1"));
    let headers = expect_code(res, 429, "RATE_LIMITED").await;
    let retry: u64 = headers
        .get("retry-after")
        .expect("retry-after header")
        .to_str()
        .unwrap()
        .parse()
        .expect("retry-after in seconds");
    assert!(retry >= 1, "{retry}");
    // Another user has their own budget.
    let b = token("user-b", Role::Psychologist);
    let res = send(node.get(CONFIG, Some(&b))).await;
    assert_eq!(res.status(), 200);
    // Bad tokens are limited by IP: three 401s, then 429.
    for i in 0..3 {
        let res = send(node.get(CONFIG, Some("garbage"))).await;
        assert_eq!(res.status(), 401, "bad-token request {}", i + 1);
    }
    let res = send(node.get(CONFIG, Some("garbage"))).await;
    let headers = expect_code(res, 429, "RATE_LIMITED").await;
    assert!(headers.contains_key("retry-after"));
    // Admins are exempt by default.
    for _ in 0..6 {
        let res = send(node.get(CONFIG, Some(&admin()))).await;
        assert_eq!(res.status(), 200, "admins are exempt by default");
    }
    let m = send(node.get("/metrics", None)).await.text().await.unwrap();
    assert!(m.contains("signalgrid_auth_failures_total"), "{m}");
    assert!(m.contains("signalgrid_rate_limited_total"), "{m}");
}

#[tokio::test]
async fn admins_are_limited_when_not_exempt() {
    let node = TestNode::start_with(|s| {
        s.limits.rest_per_minute = 3;
        s.limits.exempt_admins = false;
    })
    .await;
    for i in 0..3 {
        let res = send(node.get(CONFIG, Some(&admin()))).await;
        assert_eq!(res.status(), 200, "admin request {}", i + 1);
    }
    let res = send(node.get(CONFIG, Some(&admin()))).await;
    let headers = expect_code(res, 429, "RATE_LIMITED").await;
    assert!(headers.contains_key("retry-after"));
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A platform page on its own origin calls the API: preflights and answers carry CORS headers
/// for the allowed origins only; other origins get ORIGIN_NOT_ALLOWED on the preflight.
#[tokio::test]
async fn cross_origin_calls_get_cors_headers_for_allowed_origins_only() {
    let ours = "https://platform.example";
    let node = TestNode::start_with(|s| s.allowed_origins = vec![ours.into()]).await;
    let preflight = |origin: &str| {
        node.http
            .request(reqwest::Method::OPTIONS, node.url("/api/video-calls/can-join/some-session"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "x-auth-token")
    };

    // The preflight of an allowed origin.
    let res = send(preflight(ours)).await;
    assert_eq!(res.status(), 204);
    let h = res.headers();
    assert_eq!(header(h, "access-control-allow-origin"), Some(ours));
    assert!(header(h, "access-control-allow-methods").is_some_and(|m| m.contains("GET") && m.contains("POST")));
    let allowed = header(h, "access-control-allow-headers").unwrap_or_default();
    for name in ["authorization", "x-auth-token", "content-type", "x-request-id"] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert!(header(h, "x-request-id").is_some());

    // Its real calls, answers and errors alike, can be read by the page.
    let res = send(node.get("/api/video-calls/config", Some(&client_token())).header("origin", ours)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(res.headers(), "access-control-allow-origin"), Some(ours));
    assert!(header(res.headers(), "access-control-expose-headers").is_some_and(|e| e.contains("x-request-id")));
    assert!(res.headers().get_all("vary").iter().any(|v| v.to_str().unwrap_or("").contains("origin")));
    let h =
        expect_code(send(node.get("/api/video-calls/config", None).header("origin", ours)).await, 401, "UNAUTHORIZED")
            .await;
    assert_eq!(header(&h, "access-control-allow-origin"), Some(ours));

    // Another origin: its preflight is refused in the error shape, and nothing lets its
    // browser read an answer (a non-browser caller still gets one).
    let h = expect_code(send(preflight("https://elsewhere.example")).await, 403, "ORIGIN_NOT_ALLOWED").await;
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    let res =
        send(node.get("/api/video-calls/config", Some(&client_token())).header("origin", "https://elsewhere.example"))
            .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(res.headers(), "access-control-allow-origin"), None);
    // No Origin (not a browser): no CORS headers.
    let res = send(node.get("/api/video-calls/config", Some(&client_token()))).await;
    assert_eq!(header(res.headers(), "access-control-allow-origin"), None);

    // With no list configured, every origin may call.
    let open = TestNode::start().await;
    let res = send(
        open.http
            .request(reqwest::Method::OPTIONS, open.url("/api/sessions"))
            .header("origin", "http://localhost:3000")
            .header("access-control-request-method", "POST"),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_eq!(header(res.headers(), "access-control-allow-origin"), Some("http://localhost:3000"));
}
