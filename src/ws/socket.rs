//! One socket's task: reads frames (charged to the client's `Budget` first, then the size
//! check, then decode, then hand to the ConnectionActor), writes the connection's bounded
//! outbound queue, pings on the heartbeat and closes a client that stops answering or
//! cannot keep up.
//!
//! While `INTAKE` frames or `INTAKE_BYTES` bytes wait for the actor, the task stops reading
//! (writing and pinging go on) until the actor catches up.
//!
//! A bad frame gets an `error` frame and the socket stays open. Every way the task ends
//! sends a close frame with its code first (`End`), unless the socket itself failed.
//! Reading happens here, not in the actor, so that the actor stays free for the messages
//! other actors send it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::json;
use signalgrid_actors::budget::Budget;
use signalgrid_actors::connection::{close, ConnMsg};
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::identity::Identity;
use signalgrid_actors::intake::Intake;
use signalgrid_actors::node::Connection;
use signalgrid_actors::outbound::{Out, Outbound, SeatReader};
use signalgrid_actors::protocol::{decode, ServerFrame};
use signalgrid_actors::session::ClientMeta;
use signalgrid_actors::telemetry;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::{Slot, WsStream};
use crate::app::App;

/// Frames written before one flush.
const WRITE_BATCH: usize = 64;
/// How long a close or ping frame may take to write before the socket is given up.
const CONTROL_WRITE: Duration = Duration::from_secs(1);

fn text(t: String) -> Message {
    Message::Text(Utf8Bytes::from(t))
}

/// A frame from a seat's buffer (encoded by the server, so always UTF-8).
fn frame(b: Bytes) -> Message {
    Message::Text(Utf8Bytes::try_from(b).unwrap_or_else(|_| Utf8Bytes::from_static("{}")))
}

fn close_with(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from_static(reason) }))
}

/// Why the socket task ends, and what it sends the client before dropping the socket.
enum End {
    /// A close frame with this code (`close`, RFC 6455 7.4.1) and reason.
    Close(u16, &'static str),
    /// Only flush: the node's close frame was written already, or the client's close is
    /// answered (tungstenite queues the echo).
    Flush,
    /// The socket failed or is gone: nothing more can be sent.
    Gone,
    /// The node's close frame was written: what the client sent before it saw the close is
    /// still read and handled (up to `LINGER`), so that none of it is lost.
    Linger,
}

/// How long a socket the node closed goes on reading what the client sent before its close
/// reply.
const LINGER: Duration = Duration::from_secs(1);

/// The close a read error calls for. tungstenite leaves the write half usable after these.
fn read_failed(e: &WsError) -> End {
    match e {
        // A frame or message over the transport cap: not read, nor buffered.
        WsError::Capacity(_) => End::Close(close::TOO_BIG, "message too big"),
        WsError::Utf8(_) => End::Close(close::INVALID_PAYLOAD, "invalid utf-8"),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Gone,
        WsError::Protocol(_) => End::Close(close::PROTOCOL, "protocol error"),
        WsError::Io(_) | WsError::ConnectionClosed | WsError::AlreadyClosed => End::Gone,
        _ => End::Close(close::INTERNAL, "internal error"),
    }
}

/// How a batch of queued frames went.
enum Written {
    /// Written and flushed; keep serving.
    More,
    /// The socket failed: stop.
    Done,
    /// The node's close frame was sent.
    Closed,
    /// The client is not reading: drop it.
    Stuck,
}

/// Writes `first` and whatever else is queued (up to a batch), then flushes.
async fn write_batch(sink: &mut SplitSink<WsStream, Message>, first: Out, rx: &mut SeatReader) -> Written {
    let mut next = Some(first);
    let mut n = 0;
    while let Some(item) = next.take() {
        match item {
            Out::Text(t) => {
                if sink.feed(frame(t)).await.is_err() {
                    return Written::Done;
                }
            }
            Out::Close(c) => {
                let _ = sink.send(close_with(c.code, c.reason)).await;
                return Written::Closed;
            }
        }
        n += 1;
        if n < WRITE_BATCH {
            next = rx.try_recv();
        }
    }
    if sink.flush().await.is_err() {
        Written::Done
    } else {
        Written::More
    }
}

fn refuse(out: &Outbound, code: ErrorCode, details: serde_json::Value) {
    telemetry::ws_error(code.as_str());
    out.send(ServerFrame::error(code, details));
}

fn rate_limited(out: &Outbound) {
    metrics::counter!(telemetry::RATE_LIMITED, "edge" => "ws").increment(1);
    refuse(out, ErrorCode::RateLimited, json!({}));
}

/// What to do with one frame from the client.
enum Read {
    Continue,
    Pong,
    Stop(End),
    /// The client closed the socket; `clean` with 1000 or 1001 (the seat leaves at once;
    /// any other code keeps it for a resume, PROTOCOL.md section 6).
    Closed {
        clean: bool,
    },
}

/// The client's frame: charged to its budget whatever it is (a refused frame costs as much
/// as a relayed one), then refused or handed to the actor.
fn on_frame(
    msg: Message,
    app: &App,
    out: &Outbound,
    intake: &Intake,
    budget: &mut Budget,
    actor: &ractor::ActorRef<ConnMsg>,
) -> Read {
    let received = Instant::now();
    let len = match &msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) => 0,
        Message::Frame(f) => f.len(),
    };
    let within = budget.admit(len, received);
    let text = match msg {
        // A pong proves the client alive even when it is over budget.
        Message::Pong(_) => return Read::Pong,
        Message::Close(c) => {
            let clean = c.is_some_and(|c| matches!(u16::from(c.code), close::NORMAL | close::GOING_AWAY));
            return Read::Closed { clean };
        }
        // Answered by the transport (tungstenite keeps at most one pong pending).
        Message::Ping(_) | Message::Frame(_) => return Read::Continue,
        // Over budget, a data frame is refused before it is looked at.
        _ if !within => {
            rate_limited(out);
            return Read::Continue;
        }
        Message::Binary(_) => {
            refuse(out, ErrorCode::BadRequest, json!({ "reason": "binary frames are not accepted" }));
            return Read::Continue;
        }
        Message::Text(t) => t,
    };
    let limit = app.settings.limits.max_frame_bytes;
    if len > limit {
        refuse(out, ErrorCode::PayloadTooLarge, json!({ "limit": limit, "size": len }));
        return Read::Continue;
    }
    match decode(text.as_str()) {
        Ok(event) => {
            intake.taken(len);
            match actor.send_message(ConnMsg::Client { event, received, len }) {
                Ok(()) => Read::Continue,
                Err(_) => Read::Stop(End::Close(close::INTERNAL, "internal error")),
            }
        }
        Err(e) => {
            refuse(out, e.code(), json!({ "reason": e.to_string() }));
            Read::Continue
        }
    }
}

/// What a socket task starts from: the pending upgrade and what the edge admitted.
pub struct Start {
    pub on_upgrade: OnUpgrade,
    pub config: WebSocketConfig,
    pub app: Arc<App>,
    pub who: Identity,
    pub meta: ClientMeta,
    pub slot: Slot,
    /// `resume` and `lastSeq` from the query (PROTOCOL.md section 6).
    pub resume: Option<(String, u64)>,
}

/// What the socket task keeps for the socket's whole life.
struct Live {
    sink: SplitSink<WsStream, Message>,
    stream: SplitStream<WsStream>,
    intake: Arc<Intake>,
    conn: Connection,
    app: Arc<App>,
    slot: Slot,
}

/// The socket task: completes the upgrade, starts the ConnectionActor, then serves the
/// socket until it closes, the client is too slow, or the node closes it.
///
/// A task's future is as large as its largest await, and everything an `async fn` is given
/// or keeps across two awaits stays in it for the task's life. So the start (upgrade,
/// handshake, actor spawn) runs as its own boxed future, freed once the socket is up, and
/// the task keeps only `Live` and the loop: the task's allocation is 1.3 KB instead of
/// 1.8 KB (docs/benchmarks.md, "Memory per idle joined connection").
pub async fn serve(start: Box<Start>) {
    // A statement of its own: the temporaries of an `if let` scrutinee (here the start's
    // future, moved into its box) would keep their room in this future until the block ends.
    let live = Box::pin(open(start)).await;
    if let Some(live) = live {
        run(live).await;
    }
}

/// Completes the upgrade and starts the ConnectionActor; None if either failed (the client
/// was told why when it could be).
async fn open(start: Box<Start>) -> Option<Live> {
    let Start { on_upgrade, config, app, who, meta, slot, resume } = *start;
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return None;
        }
    };
    let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let (mut sink, stream) = socket.split();
    let intake = Arc::new(Intake::default());
    let failed = match resume {
        Some((token, last_seq)) => {
            match app.node.resume(who.clone(), meta.clone(), intake.clone(), &token, last_seq).await {
                Ok(conn) => return Some(Live { sink, stream, intake, conn, app, slot }),
                Err(f) => Some(f),
            }
        }
        None => None,
    };
    match app.node.connect(who, meta, intake.clone(), failed).await {
        Ok(conn) => Some(Live { sink, stream, intake, conn, app, slot }),
        Err(code) => {
            let _ = sink.send(text(ServerFrame::error(code, json!({})))).await;
            let why = if code == ErrorCode::NodeDraining { close::RESTART } else { close::INTERNAL };
            let _ = sink.send(close_with(why, code.as_str())).await;
            None
        }
    }
}

/// Serves a started socket until it closes.
async fn run(live: Live) {
    let Live { mut sink, mut stream, intake, conn, app, slot } = live;
    let Connection { id, actor, out, reader: mut rx } = conn;
    let socket = rx.socket();
    let mut clean = false;
    let beat = Duration::from_millis(app.settings.limits.heartbeat_ms);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    let mut last_pong = Instant::now();
    let mut budget = Budget::new(&app.settings.limits);
    let overflow = rx.overflow_signal();
    // A write that cannot finish within two heartbeats means the client stopped reading.
    let write_limit = beat * 2;
    let end = loop {
        tokio::select! {
            biased;
            // The socket is stuck or too slow: its queued frames are dropped, only the close
            // is still offered (below).
            _ = overflow.fired() => break End::Close(close::POLICY, "slow consumer"),
            item = rx.recv() => {
                // None: the seat ended this socket (it was replaced by a resume).
                let Some(first) = item else { break End::Flush };
                let wrote = tokio::select! {
                    biased;
                    _ = overflow.fired() => Written::Stuck,
                    w = tokio::time::timeout(write_limit, write_batch(&mut sink, first, &mut rx)) => w.unwrap_or(Written::Stuck),
                };
                match wrote {
                    Written::More => {}
                    Written::Done => break End::Flush,
                    Written::Closed => break End::Linger,
                    Written::Stuck => {
                        if !out.is_overflowed() {
                            telemetry::slow_consumer();
                        }
                        tracing::debug!(conn = %id, "client stopped reading; disconnecting");
                        break End::Close(close::POLICY, "slow consumer");
                    }
                }
            }
            _ = intake.room(), if intake.full() => {}
            frame = stream.next(), if !intake.full() => match frame {
                Some(Ok(msg)) => match on_frame(msg, &app, &out, &intake, &mut budget, &actor) {
                    Read::Continue => {}
                    Read::Pong => last_pong = Instant::now(),
                    Read::Stop(end) => break end,
                    Read::Closed { clean: c } => {
                        clean = c;
                        break End::Flush;
                    }
                },
                Some(Err(e)) => {
                    tracing::debug!(conn = %id, error = %e, "socket read failed");
                    break read_failed(&e);
                }
                None => break End::Gone,
            },
            _ = ping.tick() => {
                if last_pong.elapsed() > beat * 2 {
                    telemetry::ws_error(ErrorCode::HeartbeatTimeout.as_str());
                    let why = Box::pin(sink.feed(text(ServerFrame::error(ErrorCode::HeartbeatTimeout, json!({})))));
                    let _ = tokio::time::timeout(CONTROL_WRITE, why).await;
                    break End::Close(close::POLICY, "heartbeat timeout");
                }
                let ping = Box::pin(sink.send(Message::Ping(Bytes::new())));
                match tokio::time::timeout(CONTROL_WRITE, ping).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break End::Gone,
                    // The socket takes nothing: the client stopped reading.
                    Err(_) => break End::Close(close::POLICY, "slow consumer"),
                }
            }
        }
    };
    if let End::Linger = end {
        let linger = async {
            while let Some(Ok(msg)) = stream.next().await {
                if let Read::Closed { .. } | Read::Stop(_) = on_frame(msg, &app, &out, &intake, &mut budget, &actor) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, linger).await;
    }
    // The seat leaves its room now (a clean close) or waits for a resume; the close frame
    // may wait for the client (a stuck one that reads again gets it) up to `write_limit`,
    // still holding the slot.
    let _ = actor.send_message(ConnMsg::SocketClosed { socket, clean });
    match end {
        End::Close(code, reason) => {
            let _ = tokio::time::timeout(write_limit, Box::pin(sink.send(close_with(code, reason)))).await;
        }
        End::Flush => {
            let _ = tokio::time::timeout(write_limit, Box::pin(sink.flush())).await;
        }
        End::Gone | End::Linger => {}
    }
    drop(slot);
}
