//! Taking a seat back after its socket was lost: `resume` on the next `--url` (round robin,
//! past nodes that refuse), then the socket swapped in under the side's sender.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::read::{Pending, Reading};
use super::{Plan, Stream};
use crate::conn::{self, ResumeError};
use crate::resume::{ResumeShared, RESUME_BUDGET};
use crate::stats::Errors;

/// Longest pause between two rounds over every `--url` when none took the seat.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Resumes `r`'s seat; `began` is when the loss was noticed (the resume latency starts
/// there). Returns the new socket's reading half, or None when the run is stopping, the
/// resume failed (`RESUME_FAILED`), or no node took the seat within `RESUME_BUDGET`.
/// `permit` (a churn slot) is kept in `pending` until the owed frames are in.
pub(super) async fn reconnect(
    r: &mut Reading,
    plan: &Plan,
    stop: &watch::Receiver<bool>,
    errors: &mut Errors,
    began: Instant,
    pending: &mut Option<Pending>,
    permit: Option<OwnedSemaphorePermit>,
) -> Option<Stream> {
    // The old socket goes (no close frame: dropping both halves just closes the TCP
    // connection); the sender waits for the new one and starts a new epoch of counters.
    // Under the sink's lock the sender is between batches, so `sent` is exactly where the
    // lost socket's counters end.
    let mut sink = r.side.sink.lock().await;
    let old = sink.take();
    r.outgoing.boundaries.lock().unwrap_or_else(|p| p.into_inner()).push(r.outgoing.sent.load(Ordering::Acquire));
    drop(sink);
    drop(old);
    if *stop.borrow() {
        return None;
    }
    let n = plan.targets.len();
    let first = (r.seat.url_index + 1) % n;
    let mut idx = first;
    let mut rounds = 0u32;
    let give_up = began + RESUME_BUDGET;
    loop {
        if *stop.borrow() {
            return None;
        }
        if Instant::now() >= give_up {
            ResumeShared::add(&r.shared.gave_up);
            return None;
        }
        let url = plan.targets[idx].ws_url(&r.seat.token);
        let wait = give_up.saturating_duration_since(Instant::now());
        let attempt = conn::resume(&url, &r.seat.socket_id, &r.seat.resume_token, r.seat.last_seq, wait);
        match tokio::time::timeout_at(give_up.into(), attempt).await {
            Ok(Ok(back)) => {
                let at = plan.origin.elapsed().as_nanos() as u64;
                r.shared.back(at);
                r.seat.resume_token = back.resume_token;
                r.seat.url_index = idx;
                // Our own frames written into the lost socket are in doubt: the window
                // should not wait for them.
                r.outgoing.forgive();
                if back.lost {
                    ResumeShared::add(&r.shared.resumed_lost);
                    r.incoming.forgive();
                }
                let (sink, stream) = back.ws.split();
                *r.side.sink.lock().await = Some(sink);
                r.side.restored.notify_waiters();
                // Owed: whatever the peer had written and we have not had. Done at
                // `connected` when that is nothing, else at the frame with the highest
                // counter written by now (or the last owed one that came, if that one
                // was lost).
                let written = r.incoming.sent.load(Ordering::Acquire);
                if r.incoming.in_flight() == 0 || written == 0 {
                    r.shared.latency.record_all(r.index, &[began.elapsed().as_nanos() as u64]);
                    *pending = None;
                } else {
                    *pending = Some(Pending { began, until: written - 1, last: Instant::now(), _permit: permit });
                }
                return Some(stream);
            }
            Ok(Err(ResumeError::Failed(reason))) => {
                ResumeShared::add(&r.shared.resume_failed);
                errors.add(format!("RESUME_FAILED_{reason}"), 1);
                return None;
            }
            Ok(Err(ResumeError::Unreachable(code))) => {
                errors.add(format!("RESUME_RETRY_{code}"), 1);
                idx = (idx + 1) % n;
                if idx == first {
                    rounds += 1;
                    let pause = Duration::from_millis(50).saturating_mul(rounds).min(MAX_BACKOFF);
                    tokio::time::sleep(pause).await;
                }
            }
            Err(_) => {
                ResumeShared::add(&r.shared.gave_up);
                return None;
            }
        }
    }
}
