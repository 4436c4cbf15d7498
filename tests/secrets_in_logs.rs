//! No secret at any log level: a real node process at `trace`, with every credential set
//! (JWT secret, TURN secret and password, NATS user and password inside the NATS URL against
//! a nats-server that requires them, a MongoDB URI with a user and password against a
//! MongoDB that authenticates), serves REST calls and a WebSocket join whose token is in the
//! query. Its whole output (stdout and stderr) contains none of the secrets, nor the tokens.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/proc.rs"]
mod proc;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use cluster_support::NatsServer;
use common::mongo::MongoServer;
use common::*;
use mongodb::bson::doc;
use serde_json::json;

const NATS_USER: &str = "sg-node";
const NATS_PASSWORD: &str = "nats-Pa55word-7f3a91";
const MONGO_USER: &str = "sg-store";
const MONGO_PASSWORD: &str = "mongo-Pa55word-c2e8d4";
const TURN_SECRET: &str = "turn-rest-secret-5b1e77";
const TURN_PASSWORD: &str = "turn-static-pw-93d0aa";

/// A MongoDB user with `MONGO_PASSWORD` on `mongo` (created without authentication, as a
/// fresh server allows).
async fn mongo_user(mongo: &MongoServer) {
    let client = mongodb::Client::with_uri_str(mongo.uri()).await.unwrap();
    let created = client
        .database("admin")
        .run_command(doc! {"createUser": MONGO_USER, "pwd": MONGO_PASSWORD, "roles": [{"role": "root", "db": "admin"}]})
        .await;
    created.expect("createUser");
}

/// Every line the process printed on stdout and stderr, after it exited.
fn all_output(rx: mpsc::Receiver<String>) -> String {
    rx.into_iter().collect::<Vec<_>>().join("\n")
}

/// Fails naming the first secret found in `output`, with its line.
fn assert_no_secret(output: &str, secrets: &[(&str, String)]) {
    for (what, secret) in secrets {
        if let Some(line) = output.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{what} is in the node's output: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_reaches_the_output_at_trace_level() {
    let nats = NatsServer::start_with_auth(NATS_USER, NATS_PASSWORD);
    let mongo = MongoServer::start();
    mongo_user(&mongo).await;
    let port = mongo.uri().trim_end_matches('/').rsplit(':').next().unwrap().to_owned();
    let mongo_uri = format!("mongodb://{MONGO_USER}:{MONGO_PASSWORD}@127.0.0.1:{port}/?authSource=admin");
    let nats_url = format!("nats://{NATS_USER}:{NATS_PASSWORD}@127.0.0.1:{}", nats.port);
    let data = tempfile::tempdir().unwrap();

    let mut c = Command::new(proc::BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VIDEO_CALL_LOG_LEVEL", "trace")
        .env("VIDEO_CALL_JWT_SECRET", SECRET)
        .env("SIGNALGRID_TURN_SECRET", TURN_SECRET)
        .env("TURN_SERVER_URL", "turn:127.0.0.1:3478")
        .env("TURN_USERNAME", "turn-user")
        .env("TURN_PASSWORD", TURN_PASSWORD)
        .env("SIGNALGRID_NATS_URL", &nats_url)
        .env("SIGNALGRID_MONGODB_URI", &mongo_uri)
        .env("SIGNALGRID_MONGODB_DATABASE", "sgsecrets")
        // Behind a "balancer" at 127.0.0.1, so that clients have addresses of their own.
        .env("SIGNALGRID_HTTP_PROXY_ADDRESSES", "127.0.0.1")
        // One connection per other address: a second one from DIRECT_IP is refused, and the
        // refusal is logged (at debug) without the address (`privacy.minimise_logs`).
        .env("SIGNALGRID_HTTP_MAX_CONNECTIONS_PER_IP", "1")
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn serve");
    let (tx, rx) = mpsc::channel();
    let readers = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ];
    for r in readers {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let (admin_token, client_token, psy_token) = (admin(), client_token(), psy_token());
    // A refused token is logged as refused, not printed.
    let refused = token("someone", signalgrid_actors::identity::Role::Client).replace('.', ".x");
    let secrets = [
        ("the JWT secret", SECRET.to_owned()),
        ("the TURN secret", TURN_SECRET.to_owned()),
        ("the TURN password", TURN_PASSWORD.to_owned()),
        ("the NATS password", NATS_PASSWORD.to_owned()),
        ("the MongoDB password", MONGO_PASSWORD.to_owned()),
        ("the admin token", admin_token.clone()),
        ("the client token", client_token.clone()),
        ("the psychologist token", psy_token.clone()),
        ("the refused token", refused.clone()),
    ];
    let mut seen = Vec::new();
    let addr = loop {
        match rx.recv_timeout(WAIT) {
            Ok(line) => match line.strip_prefix("signalgrid listening on ") {
                Some(a) => break a.to_owned(),
                None => seen.push(line),
            },
            Err(e) => {
                // It did not start: what it printed until then must be clean too.
                let _ = child.kill();
                assert_no_secret(&seen.join("\n"), &secrets);
                panic!("serve did not print its address ({e}): {}", seen.join("\n"));
            }
        }
    };

    // REST: a session created by an admin, a room, the ICE config with TURN credentials.
    let http = reqwest::Client::new();
    let mut body = SessionSpec::default().body();
    body["client"]["name"] = json!(CLIENT_NAME);
    body["psychologist"]["name"] = json!(PSY_NAME);
    let res = http
        .post(format!("http://{addr}/api/sessions"))
        .header("x-auth-token", &admin_token)
        .header("user-agent", USER_AGENT)
        .header("x-forwarded-for", CLIENT_IP)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let session: serde_json::Value = res.json().await.unwrap();
    let id = session["id"].as_str().unwrap();
    let res = http
        .post(format!("http://{addr}/api/video-calls/generate-room/{id}"))
        .header("x-auth-token", &client_token)
        .header("user-agent", USER_AGENT)
        .header("x-forwarded-for", CLIENT_IP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let room = res.json::<serde_json::Value>().await.unwrap()["roomId"].as_str().unwrap().to_owned();
    let res = http
        .get(format!("http://{addr}/api/video-calls/config"))
        .header("x-auth-token", &client_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = http.get(format!("http://{addr}/api/sessions/{id}")).header("x-auth-token", &refused).send().await;
    assert_eq!(res.unwrap().status(), 401);

    // A client connecting straight to the node, past its per-address cap.
    let held = direct_connection(&addr).await;
    let mut refused_conn = direct_connection(&addr).await;
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_to_end(&mut refused_conn, &mut answer))
        .await
        .expect("the node closes a connection past its cap")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("CONNECTION_LIMIT"));
    drop(held);

    // WebSockets with the token in the query, a join and a relay.
    let mut a = client_with_headers(&format!("ws://{addr}/ws?token={client_token}")).await;
    let mut b = WsClient::connect_url(&format!("ws://{addr}/ws?token={psy_token}")).await;
    a.send("join-room", json!({"roomId": room, "userName": CLIENT_NAME})).await;
    a.next_event("room-joined").await;
    b.join(&room).await;
    a.next_event("user-joined").await;
    // A call's SDP names the participants' addresses: it is relayed, never logged (the
    // WebSocket library traces whole frames; the node drops those lines).
    let sdp = "v=0 o=- 4611 2 IN IP4 203.0.113.77 sdp-never-logged";
    b.send("offer", json!({"offer": {"sdp": sdp}, "to": a.socket_id})).await;
    a.next_event("offer").await;
    a.close().await;
    b.close().await;

    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -TERM");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap());
    assert!(tokio::time::timeout(WAIT * 3, status).await.expect("the node exits").unwrap().success());
    let output = seen.join("\n") + "\n" + &all_output(rx);

    assert!(output.contains("TRACE") || output.contains("DEBUG"), "the node did not log at trace level");
    assert_no_secret(&output, &secrets);
    assert!(!output.contains("sdp-never-logged"), "an SDP reached the node's output");
    // No names, user agents or client addresses either, at any level: libraries' payload
    // traces are dropped (the NATS client traced room membership, names included), and the
    // node's own lines hide addresses under `privacy.minimise_logs` (on by default).
    for (what, value) in [
        ("a client name", CLIENT_NAME),
        ("a psychologist name", PSY_NAME),
        ("a client address", CLIENT_IP),
        ("a direct client's address", DIRECT_IP),
        ("a user agent", USER_AGENT),
    ] {
        let lines: Vec<&str> =
            output.lines().filter(|l| l.contains(value)).take(5).map(|l| &l[..l.len().min(400)]).collect();
        assert!(lines.is_empty(), "{what} ({value}) reached the node's output:\n{}", lines.join("\n"));
    }
}

const CLIENT_NAME: &str = "Zelda Quixote-Unwin";
const PSY_NAME: &str = "Dr. Ottoline Brackenbury";
const CLIENT_IP: &str = "203.0.113.99";
const DIRECT_IP: &str = "127.0.0.33";

/// A TCP connection to the node at `addr` from `DIRECT_IP`.
async fn direct_connection(addr: &str) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(std::net::SocketAddr::new(DIRECT_IP.parse().unwrap(), 0)).unwrap();
    tokio::time::timeout(WAIT, s.connect(addr.parse().unwrap())).await.expect("connect timed out").unwrap()
}
const USER_AGENT: &str = "Mozilla/5.0 (Minimise; test) UA-4711";

/// A WebSocket client whose upgrade carries a user agent and a forwarded address.
async fn client_with_headers(url: &str) -> WsClient {
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    req.headers_mut().insert("user-agent", USER_AGENT.parse().unwrap());
    req.headers_mut().insert("x-forwarded-for", CLIENT_IP.parse().unwrap());
    let (ws, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.expect("connect timed out").unwrap();
    WsClient::from_stream(ws).await
}
