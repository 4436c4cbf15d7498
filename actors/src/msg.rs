//! The messages the node's actors send each other, in one module that imports none of the
//! actors: `connection`, `room`, `rooms`, `connections` and `node` all depend on it (and on
//! `ctx`), never on each other in a circle.

use std::sync::Arc;
use std::time::Instant;

use ractor::{ActorRef, RpcReplyPort};

use crate::errors::ErrorCode;
use crate::intake::Intake;
use crate::outbound::{Outbound, SeatReader};
use crate::ports::{HandOverRequest, HandedOver, LeaveReason, Member, RoomEvent};
use crate::protocol::{ClientEvent, MediaState};
use crate::routing::RoomView;
use crate::seat::{ResumeFailure, TokenClaims};
use crate::{ConnId, RoomId};

/// WebSocket close codes the server uses (RFC 6455 7.4.1; 4xxx are this contract's, see
/// docs/protocol.md). Every path that ends a socket sends one of these first.
pub mod close {
    pub const NORMAL: u16 = 1000;
    /// The client's page went away (a tab closed): like `NORMAL`, the seat leaves at once.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the WebSocket framing: reserved bits or opcodes, an unmasked frame,
    /// a fragmented or oversized control frame, a continuation without a start.
    pub const PROTOCOL: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Slow consumer, heartbeat timeout, a seat lost and not taken back (`ROOM_FULL`).
    pub const POLICY: u16 = 1008;
    /// A frame or message over the transport cap (never read, nor buffered).
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    /// The node is shutting down (drain).
    pub const RESTART: u16 = 1012;
    /// The same user joined the room from another connection.
    pub const REPLACED: u16 = 4001;
    /// Kicked by an operator.
    pub const KICKED: u16 = 4003;
}

// ---- to a ConnectionActor (a seat)

pub enum ConnMsg {
    /// A decoded client event, when its frame was read, and the frame's length in bytes
    /// (handed back to the `Intake` once handled).
    Client { event: ClientEvent, received: Instant, len: usize },
    /// This connection's place in `room_id` was taken by the same user's new connection.
    Replaced { room_id: RoomId },
    /// A host admitted this waiting seat into `room_id` (its `room-joined` follows).
    Admitted { room_id: RoomId },
    /// A host turned this waiting seat away from `room_id`: `error ADMISSION_DENIED`.
    Denied { room_id: RoomId },
    /// Close the socket with an `error` frame (drain, kick, room close). Unless the code is
    /// `NodeDraining`, the seat ends with the socket.
    Disconnect { code: ErrorCode, close_code: u16 },
    /// Socket `socket` is gone. `clean`: the client closed it with 1000/1001 (the seat
    /// leaves); otherwise the seat waits for a resume, if that socket was its current one.
    SocketClosed { socket: u64, clean: bool },
    /// A new socket takes this seat back (a resume on this node).
    Resume(Box<ResumeRequest>),
    /// Another node takes this seat (a resume that arrived there). The request is boxed: it
    /// is the largest of these messages and rare, and ractor's processing loop keeps room
    /// for a message, several times over, for the actor's whole life.
    HandOver { req: Box<HandOverRequest>, reply: RpcReplyPort<Result<HandedOver, ResumeFailure>> },
    /// A hand-over held while socket `socket` was still attached is due now, whether or not
    /// that socket has closed (see `connection::HAND_OVER_HOLD`).
    HandOverDue { socket: u64 },
    /// The seat's resume window, started at away number `away`, ran out.
    Expire { away: u64 },
    /// Test hook: the handler panics (see `Node::inject_conn_fault`).
    #[doc(hidden)]
    InjectFault,
}

/// A socket that resumes a seat on this node.
pub struct ResumeRequest {
    pub claims: TokenClaims,
    pub last_seq: u64,
    pub intake: Arc<Intake>,
    /// When the resume was asked for (for the latency metric).
    pub started: Instant,
    /// For a seat arriving from another node: what that node handed over.
    pub claim: Option<Box<Claim>>,
    pub reply: RpcReplyPort<Result<SeatReader, ResumeFailure>>,
}

/// How a seat comes to be.
pub enum Origin {
    /// A new connection. `failed`: the client asked to resume and could not (it gets
    /// `resumed: false` and `RESUME_FAILED` first).
    New { failed: Option<ResumeFailure> },
    /// Arriving from another node (or from a dead one): registered here while its old node
    /// is asked; the first `ConnMsg::Resume` brings its `Claim` and completes it.
    Arriving,
}

/// A seat arriving from another node.
pub struct Claim {
    pub handed: HandedOver,
    /// Frames addressed to the seat may be gone (its node died).
    pub lost: bool,
}

// ---- to a RoomActor

/// A member connected to this node.
#[derive(Debug, Clone)]
pub struct LocalConn {
    pub out: Outbound,
    pub actor: ActorRef<ConnMsg>,
    /// What shared membership says about it (to put it back if the cluster dropped it).
    /// Boxed, so that the room's map of local members keeps a pointer per slot, not a
    /// member (a map of two has four slots).
    pub member: Box<Member>,
}

pub enum RoomMsg {
    /// Admit a member (rules already checked). Replies after `room-joined` is queued to the
    /// joiner and `user-joined` to the local others. Boxed: it is by far the largest message,
    /// and ractor's processing loop keeps room for a message, several times over, for the
    /// actor's whole life.
    Join(Box<JoinRequest>),
    /// A connection leaves (leave-room, close, or a second room), for `reason`.
    Leave { conn_id: ConnId, reason: LeaveReason, reply: Option<RpcReplyPort<()>> },
    /// A local seat lost its socket (`away`) or got one back: shared membership says so,
    /// and the others hear `user-reconnecting` / `user-reconnected`.
    Away { conn_id: ConnId, away: bool, reply: RpcReplyPort<()> },
    /// A host settles waiting member `conn_id`: admitted (`admit`, within `capacity`
    /// members) or denied. Answers the member as it was, or `PEER_NOT_FOUND` (not waiting
    /// here), `ROOM_FULL`, `CLUSTER_UNAVAILABLE`.
    Settle { conn_id: ConnId, admit: bool, capacity: usize, reply: RpcReplyPort<Result<Member, ErrorCode>> },
    /// Local member `conn_id` sent `media-state`: remember it in shared membership (written
    /// at most every `MEDIA_WRITE_EVERY` per room; later changes wait for `FlushMedia`).
    Media { conn_id: ConnId, media: MediaState, reply: RpcReplyPort<()> },
    /// Write the media states that changed since the last write.
    FlushMedia,
    /// Send a frame to every member (on every node), except `except`.
    Broadcast { frame: String, except: Option<ConnId> },
    /// An event from another node (or this one, echoed by the bus).
    Remote(RoomEvent),
    /// Load the room from shared membership: the first message of every RoomActor.
    /// `restart`: it replaces one that failed, so repair what the failure left behind.
    Init { restart: bool },
    /// Re-read shared membership (periodically, and when the cluster connection is back).
    Resync,
    /// A frame from another node that may not go straight to its target (see
    /// `RoomView::direct`): its sender or target is not announced here yet, a change is being
    /// announced, or an earlier frame waits here. Re-read membership if the sender is unknown,
    /// so that `user-joined` goes first, then hand it to local member `to`. Dropped if the
    /// sender or `to` is not in the room.
    Deliver { from: ConnId, to: ConnId, frame: String, seq: u64 },
    /// A time limit of the room's session came due (a `session-ending` warning or the
    /// window's end; see `room::limits`). Stale when `generation` is not the current one.
    LimitsTick { generation: u64 },
    /// Test hook: panic inside the handler, to exercise supervision.
    InjectFault,
}

/// A join for `RoomMsg::Join`.
pub struct JoinRequest {
    pub member: Member,
    pub conn: LocalConn,
    /// How many members the room holds (from the session's type).
    pub capacity: usize,
    /// The seat is already a member (it arrives from another node): no `room-joined`.
    pub resume: bool,
    /// The session as the joiner's rules were checked against (None for a seat arriving
    /// from another node: the room looks it up); its time limits start from it.
    pub session: Option<Box<crate::session::Session>>,
    pub reply: RpcReplyPort<Result<Vec<Member>, ErrorCode>>,
}

// ---- to the RoomSupervisor

pub enum RoomsMsg {
    /// The running RoomActor for a room, started if needed.
    GetOrSpawn { room_id: RoomId, reply: RpcReplyPort<Option<(ActorRef<RoomMsg>, Arc<RoomView>)>> },
}
