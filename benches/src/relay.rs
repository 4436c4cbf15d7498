//! The relay phase: in every pair, each side sends `ice-candidate` frames to the other
//! (paced, or as fast as its window allows) and reads what the other sends it.
//!
//! A candidate carries `{"seq":n,"t":<ns since the generator started>,"pad":"..."}`; the
//! reader takes `t` back out of the relayed frame for the latency. A flow (one direction of
//! one pair) counts sent, delivered and refused messages; the sender never has more than
//! `window` in flight, so the server's per-connection outbound queue cannot overflow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{error_code, Frame, Joined, Ws};
use crate::stats::{Errors, Latency, RelayReport, Shared};

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
}

/// One direction of one pair.
#[derive(Default)]
struct Flow {
    sent: AtomicU64,
    delivered: AtomicU64,
    refused: AtomicU64,
    progress: Notify,
}

impl Flow {
    fn in_flight(&self) -> u64 {
        let done = self.delivered.load(Ordering::Acquire) + self.refused.load(Ordering::Acquire);
        self.sent.load(Ordering::Acquire).saturating_sub(done)
    }
}

type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

/// What a sender needs.
struct Sending {
    flow: Arc<Flow>,
    /// Frame text before the seq number.
    prefix: String,
    /// This flow's rate in msgs/s (0: unthrottled) and its start (staggered across flows).
    rate: f64,
    begin: Instant,
    deadline: Instant,
}

async fn send(mut sink: Sink, s: Sending, plan: &Plan) -> Result<Sink, (Sink, &'static str)> {
    let refill = (plan.window / 4).max(1);
    let mut seq: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= s.deadline {
            return Ok(sink);
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
        for _ in 0..n {
            let t = plan.origin.elapsed().as_nanos() as u64;
            let text = format!("{}{seq},\"t\":{t},\"pad\":\"{}\"}}}}}}", s.prefix, Pad(plan.pad));
            s.flow.sent.fetch_add(1, Ordering::AcqRel);
            seq += 1;
            if sink.feed(Message::text(text)).await.is_err() {
                return Err((sink, "RELAY_SEND_FAILED"));
            }
        }
        if sink.flush().await.is_err() {
            return Err((sink, "RELAY_SEND_FAILED"));
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

#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

#[derive(Deserialize)]
struct Candidate {
    candidate: Stamp,
}

/// What a reader found.
#[derive(Default)]
struct ReadOut {
    errors: Errors,
    delivered_in_period: u64,
}

struct Reading {
    /// The flow this side receives, and the one it sends (its refusals come back here).
    incoming: Arc<Flow>,
    outgoing: Arc<Flow>,
    index: usize,
    period_end: Instant,
}

async fn read(mut stream: Stream, r: Reading, plan: &Plan, hist: &Shared, mut stop: watch::Receiver<bool>) -> ReadOut {
    let mut out = ReadOut::default();
    let mut local = Vec::with_capacity(LOCAL);
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            m = stream.next() => m,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                let code = c.map(|c| u16::from(c.code)).unwrap_or(1005);
                out.errors.add(format!("RELAY_CLOSED_{code}"), 1);
                break;
            }
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => {
                out.errors.add("RELAY_SOCKET_LOST", 1);
                break;
            }
        };
        let now_ns = plan.origin.elapsed().as_nanos() as u64;
        let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
            out.errors.add("RELAY_BAD_FRAME", 1);
            continue;
        };
        match frame.event {
            "ice-candidate" => {
                let stamp = frame.data.and_then(|d| serde_json::from_str::<Candidate>(d.get()).ok());
                let Some(c) = stamp else {
                    out.errors.add("RELAY_BAD_CANDIDATE", 1);
                    continue;
                };
                local.push(now_ns.saturating_sub(c.candidate.t));
                if local.len() == LOCAL {
                    hist.record_all(r.index, &local);
                    local.clear();
                }
                if Instant::now() < r.period_end {
                    out.delivered_in_period += 1;
                }
                r.incoming.delivered.fetch_add(1, Ordering::AcqRel);
                r.incoming.progress.notify_one();
            }
            "error" => {
                out.errors.add(error_code(frame.data), 1);
                r.outgoing.refused.fetch_add(1, Ordering::AcqRel);
                r.outgoing.progress.notify_one();
            }
            _ => {}
        }
    }
    hist.record_all(r.index, &local);
    out
}

fn prefix(to: &str) -> String {
    format!(r#"{{"event":"ice-candidate","data":{{"to":{},"candidate":{{"seq":"#, serde_json::Value::from(to))
}

/// Relays inside every pair for `plan.duration`, drains, closes the sockets, and reports.
pub async fn run(pairs: Vec<(Joined, Joined)>, plan: Plan) -> (RelayReport, Errors) {
    let plan = Arc::new(plan);
    let hist = Arc::new(Shared::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let flows_n = pairs.len() * 2;
    let frame_bytes = pairs.first().map_or(0, |(_, b)| {
        format!("{}1000000,\"t\":10000000000,\"pad\":\"{}\"}}}}}}", prefix(&b.socket_id), Pad(plan.pad)).len()
    });
    let rate_per_flow = plan.rate as f64 / flows_n.max(1) as f64;
    let start = Instant::now();
    let deadline = start + plan.duration;
    let mut flows = Vec::with_capacity(flows_n);
    let mut senders = Vec::with_capacity(flows_n);
    let mut readers = Vec::with_capacity(flows_n);
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        let (ab, ba) = (Arc::new(Flow::default()), Arc::new(Flow::default()));
        flows.push(ab.clone());
        flows.push(ba.clone());
        let (sink_a, stream_a) = a.ws.split();
        let (sink_b, stream_b) = b.ws.split();
        let sides = [
            (2 * i, sink_a, stream_a, &b.socket_id, ab.clone(), ba.clone()),
            (2 * i + 1, sink_b, stream_b, &a.socket_id, ba, ab),
        ];
        for (index, sink, stream, to, outgoing, incoming) in sides {
            // Spread the flows' first messages over one period, so paced sends do not
            // arrive in lock-step bursts.
            let offset = if rate_per_flow > 0.0 {
                Duration::from_secs_f64(index as f64 / flows_n as f64 / rate_per_flow)
            } else {
                Duration::ZERO
            };
            let sending = Sending {
                flow: outgoing.clone(),
                prefix: prefix(to),
                rate: rate_per_flow,
                begin: start + offset,
                deadline,
            };
            let p = plan.clone();
            let bound = plan.duration + plan.drain + Duration::from_secs(2);
            senders.push(tokio::spawn(async move { tokio::time::timeout(bound, send(sink, sending, &p)).await }));
            let reading = Reading { incoming, outgoing, index, period_end: deadline };
            let (p, h, stop) = (plan.clone(), hist.clone(), stop_rx.clone());
            readers.push(tokio::spawn(async move {
                tokio::time::timeout(bound + Duration::from_secs(2), read(stream, reading, &p, &h, stop))
                    .await
                    .unwrap_or_default()
            }));
        }
    }
    let mut errors = Errors::default();
    let mut sinks = Vec::with_capacity(flows_n);
    for s in senders {
        match s.await {
            Ok(Ok(Ok(sink))) => sinks.push(sink),
            Ok(Ok(Err((sink, code)))) => {
                errors.add(code, 1);
                sinks.push(sink);
            }
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
    let mut in_period = 0;
    for r in readers {
        let out = r.await.unwrap_or_default();
        in_period += out.delivered_in_period;
        errors.merge(out.errors);
    }
    let closing = sinks.into_iter().map(|mut s| async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), s.close()).await;
    });
    futures_util::future::join_all(closing).await;
    let delivered: u64 = flows.iter().map(|f| f.delivered.load(Ordering::Acquire)).sum();
    let refused: u64 = flows.iter().map(|f| f.refused.load(Ordering::Acquire)).sum();
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
    (report, errors)
}
