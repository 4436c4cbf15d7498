//! The OpenAPI document at `GET /api/openapi.json` (PROTOCOL.md sections 7 and 10) against
//! a live `signalgrid serve` (embedded store): it is OpenAPI 3.1 and names every route the
//! server has; schemathesis finds no server error and no answer the document does not
//! describe; and the errors schemathesis cannot provoke (payment, time window, closed
//! session, 413, 429, ...) are provoked here and checked against the document.
//!
//! schemathesis: `SIGNALGRID_SCHEMATHESIS`, else the one scripts/test.sh installs into
//! .tools/venv.

mod common;
use common::*;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use signalgrid_actors::identity::Role;

#[path = "common/proc.rs"]
mod proc;
use proc::{cmd, NodeProc};

/// Every route of the server but `/ws` (method, path as the document writes it). A new
/// route goes here and into the document (src/http/openapi/mod.rs says how).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/video-calls/config"),
    ("post", "/api/video-calls/generate-room/{sessionId}"),
    ("get", "/api/video-calls/can-join/{sessionId}"),
    ("post", "/api/video-calls/start/{sessionId}"),
    ("post", "/api/video-calls/end/{sessionId}"),
    ("post", "/api/sessions"),
    ("get", "/api/sessions/{sessionId}"),
    ("patch", "/api/sessions/{sessionId}"),
    ("get", "/api/rooms"),
    ("get", "/api/rooms/{roomId}"),
    ("delete", "/api/rooms/{roomId}/participants/{socketId}"),
    ("post", "/api/rooms/{roomId}/close"),
    ("get", "/api/audit"),
    ("get", "/api/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/call/{sessionId}"),
    ("get", "/web/{file}"),
];

/// An id no session has.
const NO_SESSION: &str = "0123456789abcdef01234567";

fn schemathesis_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SIGNALGRID_SCHEMATHESIS") {
        return p.into();
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/schemathesis");
    assert!(local.exists(), "schemathesis not found: run scripts/test.sh (it installs it into .tools/venv)");
    local
}

/// A node on the embedded store with `env` settings.
fn node(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> NodeProc {
    let mut c = cmd(dir.path());
    for (k, v) in env {
        c.env(k, v);
    }
    NodeProc::serve(c)
}

async fn fetch_doc(addr: &str) -> Value {
    let res = tokio::time::timeout(WAIT, reqwest::get(format!("http://{addr}/api/openapi.json")))
        .await
        .expect("the document in time")
        .expect("the document is served");
    assert_eq!(res.status().as_u16(), 200, "served without a token");
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    let text = res.text().await.unwrap();
    serde_json::from_str(&text).expect("the document is JSON")
}

/// `/a/{x}/b` -> `/a/{}/b`.
fn shape(path: &str) -> String {
    path.split('/').map(|s| if s.starts_with('{') { "{}" } else { s }).collect::<Vec<_>>().join("/")
}

/// Every `warp::path!(...)` of src/http (the routes `/ws` aside), as `/a/{}/b`.
fn routes_in_source() -> BTreeSet<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut files = vec![];
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("warp::path!(") {
            let rest = &text[i + "warp::path!(".len()..];
            let args = &rest[..rest.find(')').expect("path! closes")];
            let segs: Vec<String> = args
                .split('/')
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "..")
                .map(|s| if s.starts_with('"') { s.trim_matches('"').to_owned() } else { "{}".to_owned() })
                .collect();
            out.insert(format!("/{}", segs.join("/")));
        }
    }
    out
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_names_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, &[]);
    let doc = fetch_doc(&n.addr).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");

    // The document and ROUTES agree, both ways.
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let known: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, known, "the document's operations and ROUTES differ");

    // Every route of the code is documented (a new `warp::path!` fails here until it is).
    let doc_shapes: BTreeSet<String> = paths.keys().map(|p| shape(p)).collect();
    let source = routes_in_source();
    assert!(source.len() >= 13, "{source:?}");
    for route in &source {
        if route != "/ws" {
            assert!(doc_shapes.contains(route), "{route} is routed in src/http but not in the document");
        }
    }

    // The server answers each documented route (no fallback NOT_FOUND).
    // No connection reuse: a node closes idle keep-alive connections (`http.header_timeout_ms`),
    // and a request sent on one as it closes fails in the client (hyper's IncompleteMessage).
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let admin = admin();
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{sessionId}", NO_SESSION)
            .replace("{file}", "signalgrid-client.js")
            .replace("{roomId}", "no-such-room")
            .replace("{socketId}", "no-such-socket");
        let url = format!("http://{}{concrete}", n.addr);
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let req = if *method == "get" { http.get(url) } else { http.request(m, url).body("{}") };
        let res = tokio::time::timeout(WAIT, req.header("x-auth-token", &admin).send()).await.unwrap().unwrap();
        let status = res.status().as_u16();
        let body: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap_or(Value::Null);
        // The fallback's 404 names nothing; a route's own NOT_FOUND says what it did not find.
        let fallback = body["error"]["code"] == "NOT_FOUND" && body["error"]["details"] == json!({});
        assert!(!fallback, "{method} {concrete}: {status} {body}");
    }

    // Both session bodies document `waitingRoom` (PROTOCOL.md section 8), a boolean.
    for (path, method) in [("/api/sessions", "post"), ("/api/sessions/{sessionId}", "patch")] {
        let body = &paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        let name = body.as_str().and_then(|r| r.strip_prefix("#/components/schemas/")).expect("a named body");
        let field = &doc["components"]["schemas"][name]["properties"]["waitingRoom"];
        assert_eq!(field["type"], "boolean", "{method} {path}: {field}");
    }

    // The token schemes the code reads (`Ctx::token`).
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["token"], json!({"type": "apiKey", "in": "header", "name": "x-auth-token"}));
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");

    // Every error answer has the contract's shape; authenticated operations list 401 and 429.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                for s in ["401", "429"] {
                    assert!(responses.contains_key(s), "{method} {path} does not list {s}");
                }
                assert!(responses["429"]["headers"]["retry-after"].is_object(), "{method} {path}");
            }
            for (status, r) in responses {
                assert!(r["headers"]["x-request-id"].is_object(), "{method} {path} {status}");
                if status.as_str() >= "400" && path != "/readyz" {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

/// A small JSON Schema check for the document's own schemas: `$ref`, `type` (one or a
/// list), `required`, `properties`, `items`, `enum`. Returns what does not fit.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").expect("a local ref");
        return conforms(doc, &doc["components"]["schemas"][name], v, at);
    }
    let type_ok = |t: &str| match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    };
    let ok = match &schema["type"] {
        Value::String(t) => type_ok(t),
        Value::Array(ts) => ts.iter().any(|t| type_ok(t.as_str().unwrap())),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: {v} is not {}", schema["type"]));
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(v) {
            return Err(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                return Err(format!("{at}: {r} missing"));
            }
        }
        for (k, s) in schema["properties"].as_object().into_iter().flatten() {
            if let Some(x) = obj.get(k) {
                conforms(doc, s, x, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Checks an answer of `method path` against the document: the status is listed, the
/// content type and body fit, the listed headers are there. Returns the body.
async fn check_answer(doc: &Value, method: &str, path: &str, res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "{method} {path}");
    let documented = &doc["paths"][path][method]["responses"][status.to_string()];
    assert!(documented.is_object(), "{method} {path} does not document {status}");
    for h in documented["headers"].as_object().into_iter().flatten().map(|(h, _)| h) {
        assert!(res.headers().contains_key(h.as_str()), "{method} {path} {status}: no {h}");
    }
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let schema = documented["content"][ct.as_str()]["schema"].clone();
    assert!(schema.is_object(), "{method} {path} {status}: content type {ct} not documented");
    let body: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    conforms(doc, &schema, &body, "body").unwrap_or_else(|e| panic!("{method} {path} {status}: {e}"));
    assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
    body
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    tokio::time::timeout(WAIT, req.send()).await.expect("answer in time").expect("request sent")
}

/// The documented errors a generator does not reach (they need a session in a given state,
/// a large body, or many requests), each answered as the document says.
#[tokio::test]
async fn errors_schemathesis_cannot_reach_match_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, &[("VIDEO_CALL_RATE_LIMIT", "3")]);
    let doc = fetch_doc(&n.addr).await;
    // No connection reuse: a node closes idle keep-alive connections (`http.header_timeout_ms`),
    // and a request sent on one as it closes fails in the client (hyper's IncompleteMessage).
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = |p: &str| format!("http://{}{p}", n.addr);
    let admin = admin();
    let create = |payment: &str, status: &str, starts_in_minutes: i64| {
        let date = chrono::Utc::now() + chrono::Duration::minutes(starts_in_minutes);
        json!({
            "client": {"id": "client-1", "name": "C"}, "psychologist": {"id": "psy-1", "name": "P"},
            "sessionDate": date.to_rfc3339(), "durationMinutes": 50, "sessionType": "Individual",
            "paymentStatus": payment, "status": status,
        })
    };
    let mut ids = HashMap::new();
    for (name, body) in [
        ("unpaid", create("pending", "Scheduled", 0)),
        ("tomorrow", create("paid", "Scheduled", 24 * 60)),
        ("cancelled", create("paid", "Cancelled", 0)),
        ("open", create("paid", "Scheduled", 0)),
    ] {
        let res = send(http.post(url("/api/sessions")).header("x-auth-token", &admin).json(&body)).await;
        assert_eq!(res.status().as_u16(), 201);
        let s: Value = res.json().await.unwrap();
        ids.insert(name, s["id"].as_str().unwrap().to_owned());
    }
    let start = "/api/video-calls/start/{sessionId}";
    let end = "/api/video-calls/end/{sessionId}";
    for (path, id, status, code) in [
        (start, "unpaid", 402, "PAYMENT_REQUIRED"),
        (start, "tomorrow", 403, "OUTSIDE_TIME_WINDOW"),
        (start, "cancelled", 409, "SESSION_CLOSED"),
        (end, "open", 409, "CALL_NOT_STARTED"),
    ] {
        let u = url(&path.replace("{sessionId}", &ids[id]));
        check_answer(&doc, "post", path, send(http.post(u).header("x-auth-token", &admin)).await, status, code).await;
    }

    // 413: a body past 64 KiB.
    let big = "x".repeat(70 * 1024);
    let res = send(http.post(url("/api/sessions")).header("x-auth-token", &admin).body(big)).await;
    check_answer(&doc, "post", "/api/sessions", res, 413, "PAYLOAD_TOO_LARGE").await;

    // 429 (with retry-after), from the fourth request of a user in a minute; the Bearer form.
    let bearer = format!("Bearer {}", token("client-429", Role::Client));
    let config = "/api/video-calls/config";
    for _ in 0..3 {
        let res = send(http.get(url(config)).header("authorization", &bearer)).await;
        assert_eq!(res.status().as_u16(), 200);
    }
    let res = send(http.get(url(config)).header("authorization", &bearer)).await;
    check_answer(&doc, "get", config, res, 429, "RATE_LIMITED").await;
}

/// Runs schemathesis against `base` with `auth` (a header line), bounded: at most
/// `max_examples` cases per operation and `max_time` seconds in all (its hypothesis runs
/// have no deadline). Every check but three: `positive_data_acceptance` (rules a schema
/// cannot say, e.g. a cursor must be one the API returned, the two parties must differ, a
/// session must be paid to start), `unsupported_method` and `allow_header_conformance` (the
/// contract answers an unknown method NOT_FOUND 404, not 405). One worker: hypothesis in
/// several threads at once trips a CPython 3.11 `ast.parse` fault ("AST constructor
/// recursion depth mismatch") that schemathesis reports as a runtime error.
fn schemathesis(base: &str, auth: &str, work: &std::path::Path, max_examples: u32, max_time: u32) {
    let out_path = work.join(format!("schemathesis-{}.txt", auth.split(':').next().unwrap()));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(schemathesis_bin())
        .current_dir(work)
        .arg("run")
        .arg(format!("{base}/api/openapi.json"))
        .args(["--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance,unsupported_method,allow_header_conformance"])
        .args(["--header", auth])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--max-time", &max_time.to_string()])
        .args(["--request-timeout", "10", "--workers", "1", "--no-color", "--generation-database", "none"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start schemathesis");
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    // The run stops itself after max_time; loading, shrinking and the summary come on top.
    let status = match rx.recv_timeout(Duration::from_secs(u64::from(max_time) + 240)) {
        Ok(s) => s.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("schemathesis did not finish: {}", std::fs::read_to_string(&out_path).unwrap_or_default());
        }
    };
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(status.success(), "schemathesis ({auth:.20}...) found problems:\n{text}");
    // Every operation but the document's own (schemathesis leaves its schema's URL out).
    let operations = ROUTES.len() - 1;
    assert!(text.contains(&format!("Tested: {operations}")), "not every operation was tested:\n{text}");
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let dir = tempfile::tempdir().unwrap();
    // Rate limits out of the way (429 is checked above): the run sends thousands of requests.
    let n = node(&dir, &[("VIDEO_CALL_RATE_LIMIT", "1000000")]);
    let base = format!("http://{}", n.addr);
    let work = tempfile::tempdir().unwrap();
    // An admin (everything allowed: sessions are created, followed through the document's
    // links into start, end, generate-room, ...), then a client by `Authorization: Bearer`
    // (FORBIDDEN where only admins or the parties may act). Without a token: the
    // `ignored_auth` check, in both runs.
    schemathesis(&base, &format!("x-auth-token: {}", admin()), work.path(), 25, 60);
    schemathesis(&base, &format!("Authorization: Bearer {}", client_token()), work.path(), 10, 30);
    let mut n = n;
    assert!(n.child.try_wait().unwrap().is_none(), "the node died during the run");
}
