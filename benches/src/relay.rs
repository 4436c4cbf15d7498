//! The relay phase: in every pair, each side sends `ice-candidate` frames to the other
//! (paced, or as fast as its window allows) and reads what the other sends it.
//!
//! A candidate carries `{"seq":n,"t":<ns since the generator started>,"pad":"..."}`: `seq`
//! is the sender's own counter (0, 1, 2, ... per direction of a pair), which the reader
//! checks for frames lost or delivered twice (`tally`), and `t` gives the latency. A flow
//! (one direction of one pair) counts sent, delivered and refused messages; the sender never
//! has more than `window` in flight, so the server's per-connection outbound queue cannot
//! overflow.
//!
//! Every side tracks the server's `seq` (PROTOCOL.md section 6), acknowledges every
//! `ack_every` frames (`ack {seq}`, as the web client does, so the seat's replay buffer stays
//! small), and when its socket is lost (close 1012 after `NODE_DRAINING`, any other close,
//! the TCP connection gone, or a drop on purpose) resumes its seat on the next `--url`
//! (`resume::reconnect`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch, Notify};
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{Joined, Ws};
use crate::resume::{Churn, Fault, ResumeReport, ResumeShared};
use crate::stats::{Errors, Latency, RelayReport, Shared};
use crate::tally;
use crate::target::Target;

mod read;
mod reconnect;

use read::{read, Reading, Seat};

/// Messages written before one flush.
const BATCH: u64 = 32;
/// Latencies a reader buffers before taking a histogram lock.
const LOCAL: usize = 256;
/// Longest a blocked sender waits before looking at the clock again.
const POLL: Duration = Duration::from_millis(20);

/// How to relay.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Total target rate over all flows; 0 = unthrottled.
    pub rate: u64,
    pub window: u64,
    pub pad: usize,
    pub duration: Duration,
    pub drain: Duration,
    /// Time origin of the `t` stamps.
    pub origin: Instant,
    /// Send `ack {seq}` every this many server frames (0: never).
    pub ack_every: u64,
    /// The `--url`s, for resumes.
    pub targets: Vec<Target>,
    pub fault: Option<Fault>,
    pub churn: Option<Churn>,
}

/// One direction of one pair.
#[derive(Default)]
pub(crate) struct Flow {
    pub(crate) sent: AtomicU64,
    pub(crate) delivered: AtomicU64,
    refused: AtomicU64,
    /// In flight when a socket was lost and given up on (never to be delivered, or in doubt).
    pub(crate) forgiven: AtomicU64,
    progress: Notify,
    /// Counters at which a socket of the sender was lost (`sent` then; its reader records it).
    boundaries: Mutex<Vec<u64>>,
}

impl Flow {
    pub(crate) fn in_flight(&self) -> u64 {
        let done = self.delivered.load(Ordering::Acquire)
            + self.refused.load(Ordering::Acquire)
            + self.forgiven.load(Ordering::Acquire);
        self.sent.load(Ordering::Acquire).saturating_sub(done)
    }

    /// Writes off what is in flight now.
    pub(crate) fn forgive(&self) {
        self.forgiven.fetch_add(self.in_flight(), Ordering::AcqRel);
        self.progress.notify_one();
    }
}

pub(crate) type Sink = SplitSink<Ws, Message>;
pub(crate) type Stream = SplitStream<Ws>;

/// One connection's writing end, shared by its sender and its reader (which acks through
/// it and swaps it on a resume).
#[derive(Default)]
pub(crate) struct Side {
    /// None while the socket is lost.
    pub(crate) sink: tokio::sync::Mutex<Option<Sink>>,
    /// Notified when a new socket is in place.
    pub(crate) restored: Notify,
}

/// What a sender needs.
struct Sending {
    flow: Arc<Flow>,
    side: Arc<Side>,
    /// Frame text before the seq number.
    prefix: String,
    /// This flow's rate in msgs/s (0: unthrottled) and its start (staggered across flows).
    rate: f64,
    begin: Instant,
    deadline: Instant,
}

/// Sends until the deadline; counts writes that failed (the reader resumes the socket).
async fn send(s: Sending, plan: &Plan) -> u64 {
    let refill = (plan.window / 4).max(1);
    let mut seq: u64 = 0;
    let mut failed = 0;
    loop {
        let now = Instant::now();
        if now >= s.deadline {
            return failed;
        }
        let in_flight = s.flow.in_flight();
        let room = plan.window.saturating_sub(in_flight);
        let due = if s.rate > 0.0 {
            match now.checked_duration_since(s.begin) {
                Some(d) => ((d.as_secs_f64() * s.rate) as u64 + 1).saturating_sub(seq),
                None => 0,
            }
        } else {
            u64::MAX
        };
        // Unthrottled, wait until a good part of the window is free, so writes are batched.
        let enough = room >= refill || in_flight == 0 || s.rate > 0.0;
        let n = if enough { room.min(due).min(BATCH) } else { 0 };
        if n == 0 {
            let until = if room == 0 || !enough {
                now + POLL
            } else {
                s.begin + Duration::from_secs_f64((seq as f64) / s.rate)
            };
            let until = until.min(s.deadline);
            if room == 0 || !enough {
                let _ = tokio::time::timeout_at(until.into(), s.flow.progress.notified()).await;
            } else {
                tokio::time::sleep_until(until.into()).await;
            }
            continue;
        }
        let mut guard = s.side.sink.lock().await;
        let Some(sink) = guard.as_mut() else {
            drop(guard);
            let until = (now + POLL).min(s.deadline);
            let _ = tokio::time::timeout_at(until.into(), s.side.restored.notified()).await;
            continue;
        };
        let mut ok = true;
        for _ in 0..n {
            let t = plan.origin.elapsed().as_nanos() as u64;
            let text = format!("{}{seq},\"t\":{t},\"pad\":\"{}\"}}}}}}", s.prefix, Pad(plan.pad));
            s.flow.sent.fetch_add(1, Ordering::AcqRel);
            seq += 1;
            if sink.feed(Message::text(text)).await.is_err() {
                ok = false;
                break;
            }
        }
        if !ok || sink.flush().await.is_err() {
            failed += 1;
            *guard = None;
        }
    }
}

struct Pad(usize);

impl std::fmt::Display for Pad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const X: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        let mut left = self.0;
        while left > 0 {
            let n = left.min(X.len());
            f.write_str(&X[..n])?;
            left -= n;
        }
        Ok(())
    }
}

fn prefix(to: &str) -> String {
    format!(r#"{{"event":"ice-candidate","data":{{"to":{},"candidate":{{"seq":"#, serde_json::Value::from(to))
}

/// Relays inside every pair for `plan.duration` (with the plan's fault or churn), drains,
/// closes the sockets, and reports.
pub async fn run(pairs: Vec<(Joined, Joined)>, plan: Plan) -> (RelayReport, ResumeReport, Errors) {
    let plan = Arc::new(plan);
    let hist = Arc::new(Shared::new());
    let shared = Arc::new(ResumeShared::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let flows_n = pairs.len() * 2;
    let frame_bytes = pairs.first().map_or(0, |(_, b)| {
        format!("{}1000000,\"t\":10000000000,\"pad\":\"{}\"}}}}}}", prefix(&b.socket_id), Pad(plan.pad)).len()
    });
    let rate_per_flow = plan.rate as f64 / flows_n.max(1) as f64;
    let start = Instant::now();
    let start_ns = plan.origin.elapsed().as_nanos() as u64;
    let deadline = start + plan.duration;
    let mut flows = Vec::with_capacity(flows_n);
    let mut sides = Vec::with_capacity(flows_n);
    let mut cmd_txs = Vec::with_capacity(flows_n);
    let mut senders = Vec::with_capacity(flows_n);
    let mut readers = Vec::with_capacity(flows_n);
    let bound = plan.duration + plan.drain + Duration::from_secs(2);
    // A lost socket may spend the whole resume budget before its reader returns.
    let read_bound = bound + crate::resume::RESUME_BUDGET + Duration::from_secs(5);
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        let (ab, ba) = (Arc::new(Flow::default()), Arc::new(Flow::default()));
        flows.push(ab.clone());
        flows.push(ba.clone());
        let (peer_of_a, peer_of_b) = (b.socket_id.clone(), a.socket_id.clone());
        let both = [(2 * i, a, peer_of_a, ab.clone(), ba.clone()), (2 * i + 1, b, peer_of_b, ba, ab)];
        for (index, j, to, outgoing, incoming) in both {
            let (sink, stream) = j.ws.split();
            let side = Arc::new(Side { sink: tokio::sync::Mutex::new(Some(sink)), ..Side::default() });
            sides.push(side.clone());
            // Spread the flows' first messages over one period, so paced sends do not
            // arrive in lock-step bursts.
            let offset = if rate_per_flow > 0.0 {
                Duration::from_secs_f64(index as f64 / flows_n as f64 / rate_per_flow)
            } else {
                Duration::ZERO
            };
            let sending = Sending {
                flow: outgoing.clone(),
                side: side.clone(),
                prefix: prefix(&to),
                rate: rate_per_flow,
                begin: start + offset,
                deadline,
            };
            let p = plan.clone();
            senders.push(tokio::spawn(async move { tokio::time::timeout(bound, send(sending, &p)).await }));
            let (tx, cmds) = mpsc::unbounded_channel();
            cmd_txs.push(tx);
            let seat = Seat {
                socket_id: j.socket_id,
                token: j.token,
                url_index: j.url_index,
                resume_token: j.resume_token,
                last_seq: j.last_seq,
                acked: 0,
            };
            let reading =
                Reading { incoming, outgoing, index, period_end: deadline, side, seat, cmds, shared: shared.clone() };
            let (p, h, stop) = (plan.clone(), hist.clone(), stop_rx.clone());
            readers.push(tokio::spawn(async move {
                tokio::time::timeout(read_bound, read(stream, reading, &p, &h, stop)).await.unwrap_or_default()
            }));
        }
    }
    let fault = plan.fault.map(|f| tokio::spawn(crate::resume::inject(f, shared.clone(), plan.origin)));
    let churn = match plan.churn {
        Some(c) => Some(tokio::spawn(crate::resume::churn(cmd_txs, c, start + Duration::from_secs(1), deadline))),
        None => {
            drop(cmd_txs);
            None
        }
    };
    let mut errors = Errors::default();
    for s in senders {
        match s.await {
            Ok(Ok(failed)) => errors.add("RELAY_SEND_FAILED", failed),
            Ok(Err(_)) => errors.add("RELAY_SEND_STUCK", 1),
            Err(_) => errors.add("RELAY_TASK_FAILED", 1),
        }
    }
    let sent: u64 = flows.iter().map(|f| f.sent.load(Ordering::Acquire)).sum();
    let sending_secs = start.elapsed().as_secs_f64().max(plan.duration.as_secs_f64());
    // Drain: wait for what is still in flight, at most `drain`.
    let drain_end = Instant::now() + plan.drain;
    while Instant::now() < drain_end && flows.iter().any(|f| f.in_flight() > 0) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    for t in [fault, churn].into_iter().flatten() {
        t.abort();
    }
    let mut in_period = 0;
    let mut seen = Vec::with_capacity(flows_n);
    for r in readers {
        let out = r.await.unwrap_or_default();
        in_period += out.delivered_in_period;
        errors.merge(out.errors);
        seen.push(out.seen);
    }
    let closing = sides.into_iter().map(|side| async move {
        let sink = side.sink.lock().await.take();
        if let Some(mut s) = sink {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.close()).await;
        }
    });
    futures_util::future::join_all(closing).await;
    let delivered: u64 = flows.iter().map(|f| f.delivered.load(Ordering::Acquire)).sum();
    let refused: u64 = flows.iter().map(|f| f.refused.load(Ordering::Acquire)).sum();
    let mut resume = ResumeReport::of(&shared, start_ns);
    resume.fault = plan.fault.as_ref().map(crate::resume::fault_name);
    resume.ack_every = plan.ack_every;
    // Reader 2i reads flow 2i+1 (the pair's b -> a) and reader 2i+1 reads flow 2i.
    let mut lost = 0;
    for (k, s) in seen.iter().enumerate() {
        let f = &flows[k ^ 1];
        let boundaries = f.boundaries.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let t = tally::tally(s, f.sent.load(Ordering::Acquire), &boundaries);
        lost += t.lost;
        if t.lost > 0 && std::env::var_os("SIGNALGRID_LOAD_DEBUG").is_some() {
            let sent = f.sent.load(Ordering::Acquire);
            let missing: Vec<u64> = (0..sent).filter(|&c| !s.contains(c)).collect();
            eprintln!("flow {} (reader {k}): sent {sent} boundaries {boundaries:?} missing {missing:?}", k ^ 1);
        }
        resume.frames_unsent += t.unsent;
        resume.frames_duplicated += s.duplicates;
    }
    // Refused frames never arrive either; they are counted as refused, not lost.
    resume.frames_lost = lost.saturating_sub(refused);
    let report = RelayReport {
        target_rate: plan.rate,
        window: plan.window,
        frame_bytes,
        duration_secs: plan.duration.as_secs_f64(),
        sent,
        delivered,
        refused,
        lost: sent.saturating_sub(delivered + refused),
        delivered_per_sec: (in_period as f64 / sending_secs).round(),
        sent_per_sec: (sent as f64 / sending_secs).round(),
        latency: Latency::of(&hist.merged(), true),
    };
    (report, resume, errors)
}
