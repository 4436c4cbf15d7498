//! Resume in the generator's clients (PROTOCOL.md section 6): what a lost socket costs, and
//! the two ways a run loses sockets on purpose, a fault on a node (`--fault`) and dropped
//! sockets (`--resume-churn`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::stats::{Latency, Shared};

/// How long one lost socket keeps trying to resume its seat (every `--url`, in turn).
pub const RESUME_BUDGET: Duration = Duration::from_secs(25);

/// What `--fault` does to the node of `--fault-node-pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultKind {
    /// SIGTERM: the node drains (`NODE_DRAINING`, close 1012) and keeps its seats.
    Drain,
    /// SIGKILL: the node dies without a word.
    Kill,
}

impl FaultKind {
    fn signal(self) -> &'static str {
        match self {
            FaultKind::Drain => "-TERM",
            FaultKind::Kill => "-KILL",
        }
    }

    fn name(self) -> &'static str {
        match self {
            FaultKind::Drain => "drain",
            FaultKind::Kill => "kill",
        }
    }
}

/// A fault to inject during the relay phase.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub kind: FaultKind,
    pub pid: u32,
    /// After the relay phase began.
    pub after: Duration,
}

/// Sockets to drop (no close frame) during the relay phase, each resuming at once.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    pub count: usize,
    /// Resumes in flight at most.
    pub inflight: usize,
}

/// A command to one side's reader.
pub enum Cmd {
    /// Drop the socket without a close frame and resume; the permit is held until the
    /// resume is complete (or failed).
    Drop(OwnedSemaphorePermit),
}

/// Counters every side updates; read once at the end.
#[derive(Default)]
pub struct ResumeShared {
    pub seats_resumed: AtomicU64,
    pub resume_failed: AtomicU64,
    pub resumed_lost: AtomicU64,
    pub gave_up: AtomicU64,
    pub latency_incomplete: AtomicU64,
    pub user_left: AtomicU64,
    pub user_reconnecting: AtomicU64,
    pub user_reconnected: AtomicU64,
    pub node_draining: AtomicU64,
    pub acks_sent: AtomicU64,
    pub churn_dropped: AtomicU64,
    /// ns since the generator's origin, +1 (0: not yet).
    pub fault_at: AtomicU64,
    pub last_back: AtomicU64,
    pub latency: Shared,
}

impl ResumeShared {
    pub fn new() -> ResumeShared {
        ResumeShared { latency: Shared::new(), ..Default::default() }
    }

    pub fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A seat came back at `at_ns` (since the origin).
    pub fn back(&self, at_ns: u64) {
        self.seats_resumed.fetch_add(1, Ordering::Relaxed);
        self.last_back.fetch_max(at_ns + 1, Ordering::Relaxed);
    }
}

/// The report's `resume` object.
#[derive(Debug, Serialize, Default)]
pub struct ResumeReport {
    /// `drain` or `kill` with `--fault`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
    /// When the signal was sent, seconds after the relay phase began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_at_secs: Option<f64>,
    /// Sockets dropped on purpose (`--resume-churn`).
    pub churn_dropped: u64,
    /// `connected` with `resumed: true` and the same socket id.
    pub seats_resumed: u64,
    /// `resumed: false` then `RESUME_FAILED` (reasons in `errors` as `RESUME_FAILED_<reason>`).
    pub resume_failed: u64,
    /// Resumed with `lost: true`.
    pub resumed_lost: u64,
    /// Lost sockets that found no node to resume on within the budget (25 s).
    pub resume_gave_up: u64,
    /// From the start of the reconnect to the last frame the seat was owed (or to
    /// `connected` when nothing was owed).
    pub resume_latency: Latency,
    /// Resumes whose owed frames had not all come by the end of the run.
    pub resume_latency_incomplete: u64,
    /// Relayed frames never delivered though the node had them (see `tally::Tally`).
    pub frames_lost: u64,
    /// The last frames written on a socket that was then lost, never delivered: the node
    /// may not have read them (no resume from client to server).
    pub frames_unsent: u64,
    /// Relayed frames delivered twice or more.
    pub frames_duplicated: u64,
    pub user_left_seen: u64,
    pub user_reconnecting_seen: u64,
    pub user_reconnected_seen: u64,
    /// `error NODE_DRAINING` frames received.
    pub node_draining_seen: u64,
    /// From the fault to the last seat resumed (its `connected`), in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_back_ms: Option<f64>,
    /// `ack` frames sent (one every `ack_every` frames; 0 = never).
    pub acks_sent: u64,
    pub ack_every: u64,
}

impl ResumeReport {
    /// The counters of `s`; frame counts and the fault's kind are filled in by the caller.
    pub fn of(s: &ResumeShared, relay_start_ns: u64) -> ResumeReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let fault_at = get(&s.fault_at);
        let last_back = get(&s.last_back);
        let ms = |ns: u64| (ns as f64 / 1e3).round() / 1e3;
        ResumeReport {
            fault_at_secs: (fault_at > 0)
                .then(|| ((fault_at - 1).saturating_sub(relay_start_ns) as f64 / 1e6).round() / 1e3),
            churn_dropped: get(&s.churn_dropped),
            seats_resumed: get(&s.seats_resumed),
            resume_failed: get(&s.resume_failed),
            resumed_lost: get(&s.resumed_lost),
            resume_gave_up: get(&s.gave_up),
            resume_latency: Latency::of(&s.latency.merged(), false),
            resume_latency_incomplete: get(&s.latency_incomplete),
            user_left_seen: get(&s.user_left),
            user_reconnecting_seen: get(&s.user_reconnecting),
            user_reconnected_seen: get(&s.user_reconnected),
            node_draining_seen: get(&s.node_draining),
            last_back_ms: (fault_at > 0 && last_back > 0).then(|| ms(last_back.saturating_sub(fault_at))),
            acks_sent: get(&s.acks_sent),
            ..ResumeReport::default()
        }
    }
}

/// Sends the fault's signal `fault.after` after now; records when.
pub async fn inject(fault: Fault, shared: Arc<ResumeShared>, origin: Instant) {
    tokio::time::sleep(fault.after).await;
    shared.fault_at.store(origin.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
    let status = std::process::Command::new("kill").arg(fault.kind.signal()).arg(fault.pid.to_string()).status();
    match status {
        Ok(s) if s.success() => {}
        other => eprintln!("signalgrid-load: {} of pid {} failed: {other:?}", fault.kind.name(), fault.pid),
    }
}

/// The fault's name for the report.
pub fn fault_name(f: &Fault) -> &'static str {
    f.kind.name()
}

/// Drops `churn.count` sockets, one side after the other, at most `churn.inflight` resuming
/// at once, starting at `begin` and stopping at `deadline`.
pub async fn churn(cmds: Vec<mpsc::UnboundedSender<Cmd>>, churn: Churn, begin: Instant, deadline: Instant) {
    tokio::time::sleep_until(begin.into()).await;
    let gate = Arc::new(Semaphore::new(churn.inflight.max(1)));
    if cmds.is_empty() {
        return;
    }
    for k in 0..churn.count {
        let permit = match tokio::time::timeout_at(deadline.into(), gate.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return,
        };
        // Consecutive drops hit different pairs: every pair's first side, then the second.
        let (n, i) = (cmds.len(), k % cmds.len());
        let side = if i < n / 2 { 2 * i } else { (2 * (i - n / 2) + 1).min(n - 1) };
        let _ = cmds[side].send(Cmd::Drop(permit));
    }
    // Keep the channels open until every resume gave its permit back.
    let _ = tokio::time::timeout_at(deadline.into(), gate.acquire_many(churn.inflight.max(1) as u32)).await;
}
