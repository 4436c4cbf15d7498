//! The open-files limit at start-up: `serve` raises its soft RLIMIT_NOFILE to the hard limit
//! and logs the figure; a connection limit that does not fit in it stops start-up (issue 13,
//! item 4). Each test runs the real binary with the child's limits lowered before exec; the
//! child is killed on drop, so a node that starts when it should not cannot outlive the test.

mod common;
use common::*;

use std::os::unix::process::CommandExt;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[path = "common/proc.rs"]
mod proc;
use proc::cmd;

/// `signalgrid serve` on a free port with the test secret, the connection limit given, and
/// RLIMIT_NOFILE (soft, hard) set in the child between fork and exec.
fn serve(data: &std::path::Path, connections: &str, soft: u64, hard: u64) -> Command {
    let mut c = cmd(data);
    c.env("VIDEO_CALL_JWT_SECRET", SECRET)
        .env("VIDEO_CALL_LOG_LEVEL", "info")
        .env("SIGNALGRID_LOG_FORMAT", "json")
        .env("SOCKET_CONNECTION_LIMIT", connections)
        .args(["serve", "--listen", "127.0.0.1:0"]);
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        c.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard));
    }
    let mut c = Command::from(c);
    c.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    c
}

#[tokio::test]
async fn a_connection_limit_above_the_open_files_limit_stops_start_up_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(WAIT, serve(dir.path(), "1000", 256, 256).output())
        .await
        .expect("serve exits instead of serving")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("SOCKET_CONNECTION_LIMIT") && err.contains("limits.max_connections"), "{err}");
    assert!(err.contains("1000 connections") && err.contains("RLIMIT_NOFILE) of 256"), "{err}");
}

#[tokio::test]
async fn serve_raises_the_soft_limit_to_the_hard_one_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    // 400 connections fit in the hard limit (512) but not in the soft one (100): the node
    // starts only because it raised its soft limit.
    let mut child = serve(dir.path(), "400", 100, 512).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logged = None;
    let started = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("signalgrid listening on ") {
                return true;
            }
            if line.contains("open-files limit") {
                logged = Some(line);
            }
        }
        false
    })
    .await
    .expect("serve starts or exits");
    assert!(started, "serve exited: the soft limit was not raised");
    let line = logged.expect("serve logs its open-files limit before listening");
    let line: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!((&line["from"], &line["to"], &line["hard"]), (&100.into(), &512.into(), &512.into()), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id().unwrap())).unwrap();
    let row = limits.lines().find(|l| l.starts_with("Max open files")).expect("a row for open files");
    let figures: Vec<&str> = row.split_whitespace().skip(3).take(2).collect();
    assert_eq!(figures, ["512", "512"], "{row}");
}
