//! The deploy files (deploy/, issue 13 item 2), checked as far as this machine allows: the
//! Kubernetes manifests against the Kubernetes schemas (kubernetes-validate --strict), the
//! Dockerfile by hadolint and its structure (it cannot be built: no container engine here),
//! the compose file parsed (PyYAML) and its structure, the systemd unit by
//! `systemd-analyze verify`. The Grafana dashboard and the Prometheus rules query only metrics
//! a real node exports. scripts/test.sh installs the checkers into .tools/venv.

mod common;
use common::*;

#[path = "common/proc.rs"]
mod proc;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(rel)
}

/// Runs a checker from PATH; (succeeded, stdout + stderr).
fn run(program: &str, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} not found ({e}); scripts/test.sh installs it into .tools/venv"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every YAML document of a file, as JSON (PyYAML's safe loader: anchors and merge keys).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let script = "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))";
    let (ok, out) = run("python3", &["-c".as_ref(), script.as_ref(), path.as_os_str()]);
    assert!(ok, "{}: {out}", path.display());
    serde_json::from_str(&out).unwrap()
}

fn k8s_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy("k8s")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// The document of `kind` among the manifests.
fn manifest(kind: &str) -> Value {
    let docs = k8s_files().iter().flat_map(|p| yaml_docs(p)).collect::<Vec<_>>();
    docs.into_iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in deploy/k8s"))
}

#[test]
fn kubernetes_manifests_pass_the_kubernetes_schemas() {
    let files = k8s_files();
    assert!(files.len() >= 5, "{files:?}");
    let mut args: Vec<&std::ffi::OsStr> = vec!["--strict".as_ref()];
    args.extend(files.iter().map(|p| p.as_os_str()));
    let (ok, out) = run("kubernetes-validate", &args);
    assert!(ok, "{out}");
    for kind in ["configmap", "secret", "deployment", "service", "poddisruptionbudget", "horizontalpodautoscaler"] {
        assert!(out.contains(&format!("passed for resource {kind}/")), "{kind} validated: {out}");
    }
}

#[test]
fn the_deployment_drains_before_it_stops_and_probes_the_health_endpoints() {
    let d = manifest("Deployment");
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let pre_stop = c["lifecycle"]["preStop"]["exec"]["command"].to_string();
    assert!(pre_stop.contains("signalgrid admin drain"), "{pre_stop}");
    // The drain: up to 10 s for clients, 10 s for HTTP requests (src/server.rs), after the
    // preStop's 5 s wait for the endpoints.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > 5 + 10 + 10, "grace {grace} s");
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "SIGNALGRID_NODE_ID"), "node id from the pod name");
    let sources = c["envFrom"].to_string();
    assert!(sources.contains("configMapRef") && sources.contains("secretRef"), "{sources}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    let hpa = manifest("HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["metrics"][0]["pods"]["metric"]["name"], "signalgrid_connections");
    let pdb = manifest("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["selector"], d["spec"]["selector"]);
}

#[test]
fn the_dockerfile_passes_hadolint_and_builds_a_non_root_image_with_a_health_check() {
    let path = deploy("Dockerfile");
    let (ok, out) = run("hadolint", &[path.as_os_str()]);
    assert!(ok, "hadolint: {out}");
    let text = std::fs::read_to_string(&path).unwrap();
    let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].starts_with("FROM rust:") && stages[0].ends_with(" AS builder"), "{stages:?}");
    assert!(text.contains("COPY --from=builder /signalgrid /usr/local/bin/signalgrid"));
    let user = text.lines().rfind(|l| l.starts_with("USER ")).expect("a USER");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    assert!(text.contains("HEALTHCHECK") && text.contains("/healthz"));
}

#[test]
fn the_compose_file_runs_three_nodes_on_a_three_server_nats_cluster_with_mongodb_and_nginx() {
    let doc = yaml_docs(&deploy("compose.yaml")).remove(0);
    let services = doc["services"].as_object().unwrap();
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["mongodb", "nats1", "nats2", "nats3", "nginx", "node1", "node2", "node3"]);
    for n in ["nats1", "nats2", "nats3"] {
        let cmd = services[n]["command"].as_array().unwrap();
        assert!(cmd.contains(&"-js".into()) && cmd.contains(&"--routes".into()), "{n}: {cmd:?}");
    }
    for n in ["node1", "node2", "node3"] {
        let s = &services[n];
        assert_eq!(s["build"]["dockerfile"], "deploy/Dockerfile");
        let env = &s["environment"];
        assert_eq!(env["SIGNALGRID_NODE_ID"], n);
        let nats = env["SIGNALGRID_NATS_URL"].as_str().unwrap();
        assert!(["nats1", "nats2", "nats3"].iter().all(|h| nats.contains(h)), "{nats}");
        assert!(env["SIGNALGRID_MONGODB_URI"].as_str().unwrap().starts_with("mongodb://mongodb"));
        // The connection limit fits in the open-files limit (serve refuses to start otherwise).
        let limit: u64 = env["SOCKET_CONNECTION_LIMIT"].as_str().unwrap().parse().unwrap();
        let hard = s["ulimits"]["nofile"]["hard"].as_u64().unwrap();
        assert!(limit + signalgrid_config::NON_SOCKET_FILES <= hard, "{n}: {limit} in {hard}");
    }
    let mount = services["nginx"]["volumes"][0].as_str().unwrap();
    assert!(mount.starts_with("./nginx/signalgrid.conf:"), "{mount}");
    assert!(deploy("nginx/signalgrid.conf").exists());
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    // verify wants the ExecStart binary to exist: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(deploy("systemd/signalgrid.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/signalgrid serve"));
    assert!(unit.contains("LimitNOFILE=") && unit.contains("TimeoutStopSec="));
    let unit = unit.replace("/usr/local/bin/signalgrid", env!("CARGO_BIN_EXE_signalgrid"));
    let path = dir.path().join("signalgrid.service");
    std::fs::write(&path, unit).unwrap();
    let (ok, out) = run("systemd-analyze", &["verify".as_ref(), path.as_os_str()]);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");
}

/// Every string under an `expr` key, at any depth.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

/// Metric names a PromQL expression selects: identifiers followed by `{`, `[` or `)` that
/// are not functions, labels or keywords (`sum by (le) (rate(x_bucket{...}[5m]))` gives
/// x_bucket). Our expressions always give a metric a label matcher or a range.
fn metric_names(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':') {
            i += 1;
        }
        if i > start {
            let word = &expr[start..i];
            let preceded_by_quote_or_dollar = start > 0 && matches!(bytes[start - 1], b'"' | b'$' | b'.');
            let starts_alpha = bytes[start].is_ascii_alphabetic();
            if starts_alpha && !preceded_by_quote_or_dollar && matches!(bytes.get(i), Some(b'{') | Some(b'[')) {
                names.push(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_come_out_of_promql() {
    let e = r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job"}[$__rate_interval]))) / up{x="y"}"#;
    assert_eq!(metric_names(e), ["a_bucket", "up"]);
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alert_rules_query_is_on_a_nodes_metrics() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/signalgrid.json")).unwrap()).unwrap();
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    let dashboard_queries = queries.len();
    assert!(dashboard_queries >= 10, "{queries:?}");
    for doc in yaml_docs(&deploy("prometheus/alerts.yaml")) {
        exprs(&doc, &mut queries);
    }
    assert!(queries.len() > dashboard_queries, "alert rules have expressions");
    let wanted: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    // Prometheus's own `up` aside, every name is one of ours.
    let ours: BTreeSet<&String> = wanted.iter().filter(|n| n.as_str() != "up").collect();
    assert!(ours.iter().all(|n| n.starts_with("signalgrid_")), "{ours:?}");
    for topic in [
        "signalgrid_connections",
        "signalgrid_rooms",
        "signalgrid_messages_relayed_total",
        "signalgrid_relay_latency_seconds_bucket",
        "signalgrid_ws_events_total",
        "signalgrid_ws_errors_total",
        "signalgrid_nats_errors_total",
        "signalgrid_store_outbox_pending",
    ] {
        assert!(ours.contains(&topic.to_owned()), "the dashboard or rules show {topic}");
    }

    // A fresh node, no traffic yet: every metric is already there.
    let dir = tempfile::tempdir().unwrap();
    let node = proc::NodeProc::serve(proc::cmd(dir.path()));
    let res = tokio::time::timeout(WAIT, reqwest::get(format!("http://{}/metrics", node.addr)))
        .await
        .expect("/metrics answers")
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let missing: Vec<&&String> = ours.iter().filter(|n| !exported.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}\n{text}");
}
