//! Shared harness for the integration tests: a real node on 127.0.0.1:0 (in-process, real
//! sockets, real SQLite file), tokens, sessions made through the REST API, and a WebSocket
//! client whose every wait has a timeout.
#![allow(dead_code)]

pub mod mongo;
pub mod nats_creds;
pub mod resume;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signalgrid::server::Server;
use signalgrid::store::EmbeddedStore;
use signalgrid::Settings;
use signalgrid_actors::identity::Role;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret-signalgrid-0123456789";
/// Upper bound of every wait in a test (not a timing assertion: a hang guard). Generous,
/// because these machines are shared: a passing test never waits this long.
pub const WAIT: Duration = Duration::from_secs(20);

/// A node serving on a free loopback port, with its own data directory.
pub struct TestNode {
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub store: Arc<EmbeddedStore>,
    pub data: Arc<tempfile::TempDir>,
    pub http: reqwest::Client,
}

pub fn settings(data: &std::path::Path) -> Settings {
    let mut s = Settings { listen: "127.0.0.1:0".parse().unwrap(), data_dir: data.to_owned(), ..Settings::default() };
    s.auth.jwt_secret = Some(SECRET.into());
    s.limits.rest_per_minute = 10_000;
    s.limits.ws_messages_per_sec = 10_000;
    s.limits.ws_burst = 10_000;
    s.limits.ws_bytes_per_sec = 1 << 30;
    s.limits.ws_burst_bytes = 1 << 30;
    s
}

impl TestNode {
    pub async fn start() -> TestNode {
        TestNode::start_with(|_| {}).await
    }

    /// Starts a node; `f` adjusts the settings first.
    pub async fn start_with(f: impl FnOnce(&mut Settings)) -> TestNode {
        let data = Arc::new(tempfile::tempdir().unwrap());
        TestNode::start_in(data, f).await
    }

    /// Starts a node on an existing data directory (for restart tests).
    pub async fn start_in(data: Arc<tempfile::TempDir>, f: impl FnOnce(&mut Settings)) -> TestNode {
        let mut s = settings(data.path());
        f(&mut s);
        let keys = signalgrid::store::seal::Keyring::from_settings(&s).expect("store.encryption_keys");
        let store = Arc::new(EmbeddedStore::open_with(&s.data_dir, keys).unwrap());
        // SIGNALGRID_TEST_STORE=mongo: the node runs on the shared test MongoDB instead.
        if mongo::nodes_on_mongo() && s.store.mongodb_uri.is_none() {
            s.store.mongodb_uri = Some(mongo::shared().uri());
            s.store.mongodb_database = mongo::database_for(&s.data_dir);
        }
        let served: Arc<dyn signalgrid_actors::ports::Store> = match s.store.mongodb_uri {
            Some(_) => signalgrid::store::open(&s).await.expect("open the MongoDB store"),
            None => store.clone(),
        };
        let listener = tokio::net::TcpListener::bind(s.listen).await.unwrap();
        let server = Server::start(s, listener, served).await.unwrap();
        let addr = server.addr();
        TestNode { server: Some(server), addr, store, data, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={}", self.addr, token)
    }

    /// Graceful shutdown (drain, flush).
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        if let Some(s) = self.server.take() {
            tokio::time::timeout(WAIT * 3, s.shutdown()).await.expect("shutdown finishes");
        }
        self.data.clone()
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.get(self.url(path));
        match token {
            Some(t) => r.header("x-auth-token", t),
            None => r,
        }
    }

    pub fn post(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.post(self.url(path));
        match token {
            Some(t) => r.header("x-auth-token", t),
            None => r,
        }
    }

    /// Creates a session through `POST /api/sessions`; returns its JSON.
    pub async fn create_session(&self, spec: &SessionSpec) -> Value {
        let res = self.post("/api/sessions", Some(&admin())).json(&spec.body()).send().await.unwrap();
        assert_eq!(res.status(), 201, "session creation failed");
        res.json().await.unwrap()
    }

    /// `POST /generate-room/:id` as the session's client; returns the room id.
    pub async fn room_for(&self, session_id: &str, as_user: &str) -> String {
        let res = self
            .post(&format!("/api/video-calls/generate-room/{session_id}"), Some(&token(as_user, Role::Client)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        v["roomId"].as_str().unwrap().to_owned()
    }

    /// A fresh joinable Individual session (client-1 / psy-1) and its room.
    pub async fn call(&self) -> (String, String) {
        let s = self.create_session(&SessionSpec::default()).await;
        let id = s["id"].as_str().unwrap().to_owned();
        let room = self.room_for(&id, "client-1").await;
        (id, room)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.app.node.stop();
        }
    }
}

/// A session to create.
#[derive(Clone)]
pub struct SessionSpec {
    pub client: String,
    pub psychologist: String,
    /// Minutes from now to `sessionDate` (negative: already started).
    pub starts_in: i64,
    pub duration: i64,
    pub session_type: &'static str,
    pub payment: &'static str,
    pub status: &'static str,
}

impl Default for SessionSpec {
    fn default() -> Self {
        SessionSpec {
            client: "client-1".into(),
            psychologist: "psy-1".into(),
            starts_in: 0,
            duration: 50,
            session_type: "Individual",
            payment: "paid",
            status: "Scheduled",
        }
    }
}

impl SessionSpec {
    pub fn body(&self) -> Value {
        let date = chrono::Utc::now() + chrono::Duration::minutes(self.starts_in);
        json!({
            "client": { "id": self.client, "name": "Client One" },
            "psychologist": { "id": self.psychologist, "name": "Dr. Psy" },
            "sessionDate": date.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "durationMinutes": self.duration,
            "sessionType": self.session_type,
            "paymentStatus": self.payment,
            "status": self.status,
        })
    }
}

pub fn token(user: &str, role: Role) -> String {
    signalgrid::auth::mint(SECRET, user, role, None, 600)
}

pub fn admin() -> String {
    token("ops-admin", Role::Admin)
}

pub fn client_token() -> String {
    token("client-1", Role::Client)
}

/// A fresh session (`SessionSpec::default()`) created as an admin, and its room generated
/// as its client, through the REST API at `base` (`http://host:port`): (session id, room id).
pub async fn call_at(base: &str) -> (String, String) {
    call_for(&reqwest::Client::new(), base, &SessionSpec::default()).await
}

/// Session `spec` created as an admin, and its room generated as `spec.client`, through the
/// REST API at `base` (`http://host:port`): (session id, room id).
pub async fn call_for(http: &reqwest::Client, base: &str, spec: &SessionSpec) -> (String, String) {
    let res = http
        .post(format!("{base}/api/sessions"))
        .header("x-auth-token", admin())
        .json(&spec.body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let res = http
        .post(format!("{base}/api/video-calls/generate-room/{id}"))
        .header("x-auth-token", token(&spec.client, Role::Client))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let room = res.json::<Value>().await.unwrap()["roomId"].as_str().unwrap().to_owned();
    (id, room)
}

pub fn psy_token() -> String {
    token("psy-1", Role::Psychologist)
}

/// A WebSocket client; every read waits at most `WAIT`.
pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
    pub node_id: String,
    /// The `connected` frame's data (`resumeToken`, `resumeWindowMs`; `resumed` and `lost`
    /// on a resume); `Null` until it arrived.
    pub hello: Value,
    /// The JWT the socket was opened with (a resume presents it again); empty when unknown.
    pub jwt: String,
    /// `seq` of the last frame read that carried one (0: none yet). A resume sends it as
    /// `lastSeq`.
    pub last_seq: u64,
}

/// What a client keeps of its seat to resume it: the socket id, the JWT, the last
/// `resumeToken` and the `seq` of the last frame it processed. Fields are public so tests
/// can present a wrong one.
#[derive(Clone, Debug)]
pub struct Seat {
    pub socket_id: String,
    pub jwt: String,
    pub resume_token: String,
    pub last_seq: u64,
}

impl Seat {
    /// `<base>/ws?token=<jwt>&resume=<resumeToken>&lastSeq=<n>` (`base`: `ws://host:port`),
    /// the values percent-encoded.
    pub fn resume_url(&self, base: &str) -> String {
        let mut u = reqwest::Url::parse(&format!("{base}/ws")).expect("a ws:// base");
        u.query_pairs_mut()
            .append_pair("token", &self.jwt)
            .append_pair("resume", &self.resume_token)
            .append_pair("lastSeq", &self.last_seq.to_string());
        u.to_string()
    }
}

/// The `token` query parameter of a `/ws` URL, if any.
fn jwt_of(url: &str) -> String {
    let u = reqwest::Url::parse(url).expect("a ws:// URL");
    let jwt = u.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
    jwt.unwrap_or_default()
}

impl WsClient {
    /// Connects and reads the `connected` frame.
    pub async fn connect(node: &TestNode, token: &str) -> WsClient {
        WsClient::connect_url(&node.ws_url(token)).await
    }

    pub async fn connect_url(url: &str) -> WsClient {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("websocket connect");
        let mut c = WsClient::from_stream(ws).await;
        c.jwt = jwt_of(url);
        c
    }

    /// A client on an upgraded socket, once the node's `connected` has arrived.
    pub async fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        let mut c = WsClient::unstarted(ws);
        let hello = c.next_event("connected").await;
        c.socket_id = hello["socketId"].as_str().unwrap().to_owned();
        c.node_id = hello["nodeId"].as_str().unwrap().to_owned();
        c.hello = hello;
        c
    }

    /// A client on an upgraded socket whose `connected` frame the caller reads itself.
    pub fn unstarted(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        WsClient {
            ws,
            socket_id: String::new(),
            node_id: String::new(),
            hello: Value::Null,
            jwt: String::new(),
            last_seq: 0,
        }
    }

    /// Opens `/ws` at `base` (`ws://host:port`) resuming `seat`, and reads `connected`. On a
    /// successful resume (`resumed: true`) the client counts on from `seat.last_seq`; else it
    /// is a new seat and counts from 0. The caller checks `hello`.
    pub async fn resume(base: &str, seat: &Seat) -> WsClient {
        let mut c = WsClient::connect_url(&seat.resume_url(base)).await;
        if c.hello["resumed"] == true {
            c.last_seq = seat.last_seq;
        }
        c
    }

    /// The seat as the client knows it now (the socket stays open).
    pub fn seat(&self) -> Seat {
        let token = self.hello["resumeToken"].as_str().unwrap_or_else(|| panic!("no resumeToken in {}", self.hello));
        Seat {
            socket_id: self.socket_id.clone(),
            jwt: self.jwt.clone(),
            resume_token: token.to_owned(),
            last_seq: self.last_seq,
        }
    }

    /// `seat().resume_url(base)`.
    pub fn resume_url(&self, base: &str) -> String {
        self.seat().resume_url(base)
    }

    /// Drops the TCP connection without a close frame (a network loss); returns the seat to
    /// resume. Frames the node sent that were not read yet are gone with the socket.
    pub fn drop_socket(self) -> Seat {
        let seat = self.seat();
        drop(self.ws);
        seat
    }

    /// Sends a close frame with `code` and waits (bounded) for the node's close; returns the
    /// seat.
    pub async fn close_with(mut self, code: u16) -> Seat {
        use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
        let seat = self.seat();
        let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
        let _ = self.ws.close(Some(frame)).await;
        let _ = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = self.ws.next().await {} }).await;
        seat
    }

    pub async fn send(&mut self, event: &str, data: Value) {
        self.send_raw(&json!({ "event": event, "data": data }).to_string()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next text frame as JSON (`{"event","data","seq"}`); panics on close or timeout.
    /// A frame's `seq`, when it has one, must be above the last one read (seq never goes
    /// back on a seat); it becomes `last_seq`.
    pub async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("socket ended")
                .expect("socket error");
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("server sent JSON");
                    self.note_seq(&v);
                    return v;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    fn note_seq(&mut self, frame: &Value) {
        if let Some(seq) = frame.get("seq") {
            let seq = seq.as_u64().unwrap_or_else(|| panic!("seq is not a whole number: {frame}"));
            assert!(seq > self.last_seq, "seq went back (last {}): {frame}", self.last_seq);
            self.last_seq = seq;
        }
    }

    /// The next frame, which must be `event` and carry a `seq`; returns its data and seq.
    pub async fn next_seq(&mut self, event: &str) -> (Value, u64) {
        let v = self.next().await;
        assert_eq!(v["event"], event, "expected {event}, got {v}");
        let seq = v["seq"].as_u64().unwrap_or_else(|| panic!("no seq on {v}"));
        (v["data"].clone(), seq)
    }

    /// The next frame, which must be `event`; returns its data.
    pub async fn next_event(&mut self, event: &str) -> Value {
        let v = self.next().await;
        assert_eq!(v["event"], event, "expected {event}, got {v}");
        v["data"].clone()
    }

    /// The next frame must be an `error` with `code`; returns its data.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let d = self.next_event("error").await;
        assert_eq!(d["code"], code, "{d}");
        assert!(d["message"].is_string() && d["details"].is_object(), "{d}");
        d
    }

    /// Joins and returns the `room-joined` data.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send("join-room", json!({ "roomId": room })).await;
        self.next_event("room-joined").await
    }

    /// Waits for the server to close the socket; returns the close code, if one was sent.
    /// Text frames before the close are returned too.
    pub async fn closed(&mut self) -> (Option<u16>, Vec<Value>) {
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for close") {
                None | Some(Err(_)) => return (None, frames),
                Some(Ok(Message::Close(c))) => return (c.map(|c| u16::from(c.code)), frames),
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    self.note_seq(&v);
                    frames.push(v);
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Closes with code 1000 (a page left): the seat leaves its room at once.
    pub async fn close(mut self) {
        use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
        let _ = self.ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).await;
    }
}

/// `tag` goes from `from` to `to` as an ice-candidate; `to`'s next frame must be it. Proves
/// that nothing else was queued for `to` before it, without waiting for "nothing".
pub async fn marker(from: &mut WsClient, to: &mut WsClient, tag: &str) {
    let id = to.socket_id.clone();
    from.send("ice-candidate", json!({"candidate": {"marker": tag}, "to": id})).await;
    let m = to.next_event("ice-candidate").await;
    assert_eq!(m["candidate"]["marker"], tag, "{m}");
    assert_eq!(m["from"], from.socket_id.as_str());
}

/// The socket ids of a `room-joined`'s participants, sorted.
pub fn socket_ids(joined: &Value) -> Vec<String> {
    let ids = joined["participants"].as_array().expect("participants is an array");
    sorted(ids.iter().map(|p| p["socketId"].as_str().unwrap().to_owned()).collect())
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Sum of a metric's samples (all label sets) in the node's `/metrics`, if it is there.
pub async fn metric(node: &TestNode, name: &str) -> Option<f64> {
    metric_at(node.addr, name, "").await
}

/// Sum of `name`'s samples whose label set contains `label` (`""`: all of them) in the
/// `/metrics` of the node at `addr` (an in-process node or a node process), if any.
pub async fn metric_at(addr: impl std::fmt::Display, name: &str, label: &str) -> Option<f64> {
    let res = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        if (rest.starts_with(' ') || rest.starts_with('{')) && rest.contains(label) {
            let v: f64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Waits (bounded by `WAIT`) until `metric_at(addr, name, label)` (0 while absent) satisfies
/// `want`. For faults no client event reports, such as a node noticing NATS went away.
pub async fn metric_until(addr: impl std::fmt::Display + Copy, name: &str, label: &str, want: impl Fn(f64) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !want(metric_at(addr, name, label).await.unwrap_or(0.0)) {
        assert!(tokio::time::Instant::now() < deadline, "{name}{label} never reached the expected value");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The session's client connected to `a_ws` and its psychologist to `b_ws` (base URLs like
/// `ws://127.0.0.1:1234`), both joined to `room`, the client first; the client has seen the
/// psychologist's `user-joined`.
pub async fn pair_in_room(a_ws: &str, b_ws: &str, room: &str) -> (WsClient, WsClient) {
    let mut a = WsClient::connect_url(&format!("{a_ws}/ws?token={}", client_token())).await;
    let mut b = WsClient::connect_url(&format!("{b_ws}/ws?token={}", psy_token())).await;
    a.join(room).await;
    b.join(room).await;
    assert_eq!(a.next_event("user-joined").await["socketId"], b.socket_id.as_str());
    (a, b)
}

/// `ws://host:port` of an in-process node.
pub fn ws_base(node: &TestNode) -> String {
    format!("ws://{}", node.addr)
}
