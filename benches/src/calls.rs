//! Call churn (`--calls-per-sec`): calls start and end at a steady rate, each in its own
//! session's room: both sides connect (on neighbouring `--url`s, like the relay pairs) and
//! join, stay `--call-hold-ms`, then the client and then the psychologist send `leave-room`
//! and close. Each call gives the nodes' webhook queue its events (room.started,
//! participant.joined, call.started, participant.left, room.finished, ...); the receiver
//! (crate::webhook) times their delivery against the generator's own join and leave times.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::conn;
use crate::rest::PairSpec;
use crate::stats::{Errors, Latency};
use crate::target::Target;
use crate::webhook::Actions;

/// How the churn went.
#[derive(Debug, serde::Serialize, Default)]
pub struct CallsReport {
    pub calls_per_sec: u64,
    pub started: u64,
    /// Calls whose both sides joined and left.
    pub completed: u64,
    pub secs: f64,
    pub join_latency: Latency,
}

/// Runs one call per `PairSpec`, `per_sec` a second, each held `hold`; returns the rooms of
/// the completed calls, the action times and the report.
pub async fn run(
    specs: Vec<PairSpec>,
    targets: &[Target],
    per_sec: u64,
    hold: Duration,
    errors: &mut Errors,
) -> (Vec<String>, Actions, CallsReport) {
    let actions = Arc::new(Mutex::new(Actions::default()));
    let start = tokio::time::Instant::now();
    let t0 = std::time::Instant::now();
    let mut set = JoinSet::new();
    let n = targets.len();
    let started = specs.len() as u64;
    for (i, spec) in specs.into_iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / per_sec as f64)).await;
        let (a, b) = (targets[i % n].clone(), targets[(i + 1) % n].clone());
        let actions = actions.clone();
        set.spawn(async move { one(spec, a, b, hold, actions).await });
    }
    let (mut rooms, mut join_ns) = (Vec::new(), Vec::new());
    // Every step of a call has its own time limit (conn::STEP_TIMEOUT); this bounds the rest.
    let end = tokio::time::Instant::now() + hold + conn::STEP_TIMEOUT * 3;
    loop {
        match tokio::time::timeout_at(end, set.join_next()).await {
            Ok(Some(Ok(Ok((room, joins))))) => {
                rooms.push(room);
                join_ns.extend(joins);
            }
            Ok(Some(Ok(Err(code)))) => errors.add(code, 1),
            Ok(Some(Err(_))) => errors.add("CALL_TASK_FAILED", 1),
            Ok(None) => break,
            Err(_) => {
                errors.add("CALL_PHASE_TIMEOUT", set.len() as u64);
                set.abort_all();
                break;
            }
        }
    }
    let report = CallsReport {
        calls_per_sec: per_sec,
        started,
        completed: rooms.len() as u64,
        secs: t0.elapsed().as_secs_f64(),
        join_latency: Latency::of_values(&join_ns),
    };
    let actions = std::mem::take(&mut *actions.lock().unwrap_or_else(|p| p.into_inner()));
    (rooms, actions, report)
}

/// One call: the client on `a`, the psychologist on `b`. Returns its room and both join
/// latencies, or an error code.
async fn one(
    spec: PairSpec,
    a: Target,
    b: Target,
    hold: Duration,
    actions: Arc<Mutex<Actions>>,
) -> Result<(String, [u64; 2]), String> {
    let mut client = conn::open(&a.ws_url(&spec.client_token), &spec.client_token, 0, &spec.room_id).await?;
    let joined_at = Utc::now();
    let mut psy = conn::open(&b.ws_url(&spec.psy_token), &spec.psy_token, 1, &spec.room_id).await?;
    {
        let mut acts = actions.lock().unwrap_or_else(|p| p.into_inner());
        acts.joined.insert(client.socket_id.clone(), joined_at);
        acts.joined.insert(psy.socket_id.clone(), Utc::now());
    }
    tokio::time::sleep(hold).await;
    let leave = format!(r#"{{"event":"leave-room","data":{{"roomId":{}}}}}"#, serde_json::Value::from(&*spec.room_id));
    for side in [&mut client, &mut psy] {
        let at = Utc::now();
        tokio::time::timeout(conn::STEP_TIMEOUT, side.ws.send(Message::text(leave.clone())))
            .await
            .map_err(|_| "LEAVE_TIMEOUT")?
            .map_err(|_| "LEAVE_SEND_FAILED")?;
        actions.lock().unwrap_or_else(|p| p.into_inner()).left.insert(side.socket_id.clone(), at);
    }
    // A browser's `ws.close()`: the close frame, then the node's frames up to its close reply.
    // Dropping the TCP socket with frames unread would make the kernel reset the connection,
    // and a reset can discard the `leave-room` the node has not read yet (the node then sees
    // a lost socket, and the seat waits for its resume window).
    for side in [&mut client, &mut psy] {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = side.ws.close(None).await;
            while let Some(Ok(_)) = side.ws.next().await {}
        })
        .await;
    }
    Ok((spec.room_id, [client.join_ns, psy.join_ns]))
}
