//! The reading side of a relay connection: relayed candidates checked and timed, the
//! server's `seq` tracked and acknowledged, and a lost socket resumed (`reconnect`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::{reconnect, Flow, Plan, Side, Stream, LOCAL};
use crate::conn::{error_code, Frame};
use crate::resume::{Cmd, ResumeShared};
use crate::stats::{Errors, Shared};
use crate::tally::Seen;

#[derive(Deserialize)]
struct Stamp {
    seq: u64,
    t: u64,
}

#[derive(Deserialize)]
struct Candidate {
    candidate: Stamp,
}

/// What a reader found.
#[derive(Default)]
pub(super) struct ReadOut {
    pub(super) errors: Errors,
    pub(super) delivered_in_period: u64,
    /// Counters of the flow it receives.
    pub(super) seen: Seen,
}

/// The seat a side holds, as its reader knows it.
pub(crate) struct Seat {
    pub(crate) socket_id: String,
    pub(crate) token: String,
    pub(crate) url_index: usize,
    pub(crate) resume_token: String,
    /// Highest server `seq` processed.
    pub(crate) last_seq: u64,
    /// `last_seq` last acknowledged.
    pub(crate) acked: u64,
}

/// A resume whose owed frames are still coming: done once the incoming counter reaches
/// `until` (what the peer had written when `connected` arrived). If a later counter comes
/// first, the owed frame was lost and the resume ended with the last owed frame that did
/// come (`last`: its arrival, or `connected`'s).
pub(super) struct Pending {
    pub(super) began: Instant,
    pub(super) until: u64,
    pub(super) last: Instant,
    pub(super) _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Pending {
    /// The resume latency once counter `c` arrived at `now`, or None while owed frames
    /// may still come.
    fn done(&mut self, c: u64, now: Instant) -> Option<Duration> {
        match c.cmp(&self.until) {
            std::cmp::Ordering::Less => {
                self.last = now;
                None
            }
            std::cmp::Ordering::Equal => Some(now - self.began),
            std::cmp::Ordering::Greater => Some(self.last - self.began),
        }
    }
}

pub(super) struct Reading {
    /// The flow this side receives, and the one it sends (its refusals come back here).
    pub(super) incoming: Arc<Flow>,
    pub(super) outgoing: Arc<Flow>,
    pub(super) index: usize,
    pub(super) period_end: Instant,
    pub(super) side: Arc<Side>,
    pub(super) seat: Seat,
    pub(super) cmds: mpsc::UnboundedReceiver<Cmd>,
    pub(super) shared: Arc<ResumeShared>,
}

/// What a reader waited for.
enum Next {
    Cmd(Option<Cmd>),
    Msg(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

pub(super) async fn read(
    stream: Stream,
    mut r: Reading,
    plan: &Plan,
    hist: &Shared,
    mut stop: watch::Receiver<bool>,
) -> ReadOut {
    let mut out = ReadOut::default();
    let mut local = Vec::with_capacity(LOCAL);
    let mut stream = Some(stream);
    let mut cmds_open = true;
    let mut pending: Option<Pending> = None;
    loop {
        let next = {
            let Some(st) = stream.as_mut() else { break };
            tokio::select! {
                _ = stop.changed() => break,
                cmd = r.cmds.recv(), if cmds_open => Next::Cmd(cmd),
                m = st.next() => Next::Msg(m),
            }
        };
        let began = Instant::now();
        let text = match next {
            Next::Cmd(Some(Cmd::Drop(permit))) => {
                ResumeShared::add(&r.shared.churn_dropped);
                drop(stream.take());
                stream =
                    reconnect::reconnect(&mut r, plan, &stop, &mut out.errors, began, &mut pending, Some(permit)).await;
                continue;
            }
            Next::Cmd(None) => {
                cmds_open = false;
                continue;
            }
            Next::Msg(Some(Ok(Message::Text(t)))) => t,
            Next::Msg(Some(Ok(Message::Close(c)))) => {
                let code = c.map(|c| u16::from(c.code)).unwrap_or(1005);
                out.errors.add(format!("RELAY_CLOSED_{code}"), 1);
                drop(stream.take());
                stream = reconnect::reconnect(&mut r, plan, &stop, &mut out.errors, began, &mut pending, None).await;
                continue;
            }
            Next::Msg(Some(Ok(_))) => continue,
            Next::Msg(None | Some(Err(_))) => {
                out.errors.add("RELAY_SOCKET_LOST", 1);
                drop(stream.take());
                stream = reconnect::reconnect(&mut r, plan, &stop, &mut out.errors, began, &mut pending, None).await;
                continue;
            }
        };
        let now_ns = plan.origin.elapsed().as_nanos() as u64;
        let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
            out.errors.add("RELAY_BAD_FRAME", 1);
            continue;
        };
        if let Some(seq) = frame.seq {
            r.seat.last_seq = r.seat.last_seq.max(seq);
            if plan.ack_every > 0 && r.seat.last_seq >= r.seat.acked + plan.ack_every {
                ack(&mut r, &mut out.errors).await;
            }
        }
        match frame.event {
            "ice-candidate" => {
                let stamp = frame.data.and_then(|d| serde_json::from_str::<Candidate>(d.get()).ok());
                let Some(c) = stamp else {
                    out.errors.add("RELAY_BAD_CANDIDATE", 1);
                    continue;
                };
                if !out.seen.insert(c.candidate.seq) {
                    continue;
                }
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
                if let Some(took) = pending.as_mut().and_then(|p| p.done(c.candidate.seq, Instant::now())) {
                    pending = None;
                    r.shared.latency.record_all(r.index, &[took.as_nanos() as u64]);
                }
            }
            "error" => {
                let code = error_code(frame.data);
                if code == "NODE_DRAINING" {
                    ResumeShared::add(&r.shared.node_draining);
                    continue;
                }
                out.errors.add(code, 1);
                r.outgoing.refused.fetch_add(1, Ordering::AcqRel);
                r.outgoing.progress.notify_one();
            }
            "user-left" => ResumeShared::add(&r.shared.user_left),
            "user-reconnecting" => ResumeShared::add(&r.shared.user_reconnecting),
            "user-reconnected" => ResumeShared::add(&r.shared.user_reconnected),
            _ => {}
        }
    }
    if pending.is_some() {
        ResumeShared::add(&r.shared.latency_incomplete);
    }
    hist.record_all(r.index, &local);
    out
}

/// Sends `ack {last_seq}` unless the sender is writing right now (then at the next frame).
async fn ack(r: &mut Reading, errors: &mut Errors) {
    let Ok(mut guard) = r.side.sink.try_lock() else { return };
    let Some(sink) = guard.as_mut() else { return };
    let text = format!(r#"{{"event":"ack","data":{{"seq":{}}}}}"#, r.seat.last_seq);
    if sink.send(Message::text(text)).await.is_err() {
        errors.add("ACK_SEND_FAILED", 1);
        *guard = None;
        return;
    }
    r.seat.acked = r.seat.last_seq;
    ResumeShared::add(&r.shared.acks_sent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_ends_with_the_last_owed_frame_even_if_the_highest_was_lost() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut p = Pending { began: t0, until: 5, last: at(1), _permit: None };
        assert_eq!(p.done(3, at(2)), None);
        assert_eq!(p.done(4, at(3)), None);
        // 5 never came; 6 (a live frame, much later) shows it: the resume ended at 4.
        assert_eq!(p.done(6, at(200)), Some(Duration::from_millis(3)));
        let mut q = Pending { began: t0, until: 5, last: at(1), _permit: None };
        assert_eq!(q.done(5, at(7)), Some(Duration::from_millis(7)));
    }
}
