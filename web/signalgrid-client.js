// signalgrid-client.js: the browser client of signalgrid, a plain ES module (no build step).
//
//   import { SignalgridClient } from '/web/signalgrid-client.js';
//   const call = new SignalgridClient({ token, sessionId });
//   call.addEventListener('remote-stream', (e) => { video.srcObject = e.detail.stream; });
//   call.addEventListener('sg-error', (e) => console.warn(e.code, e.message));
//   const verdict = await call.canJoin();          // {canJoin, reason, minutesUntilSession}
//   if (verdict.canJoin) await call.start(localStream);
//
// It speaks the protocol of docs/protocol.md: REST for the ICE servers, the room id and the
// join check, and one WebSocket (`/ws?token=…`) for signaling. Media is a mesh: one
// RTCPeerConnection per remote participant; whoever joins the room last sends the offers.
// Renegotiation (a track added later) uses the "perfect negotiation" pattern; which side
// of a pair is polite is decided by comparing the two socket ids. After a dropped socket or
// NODE_DRAINING it reconnects with exponential backoff and full jitter, through the next
// signaling endpoint if several are given, and resumes its seat (same socket id, same room,
// same peer connections; the frames it missed are replayed). Only when the resume fails or
// its window has passed does it join the room again and re-establish the peer connections.
// The peer connections are in signalgrid-peers.js, the resume bookkeeping (seq, ack, token)
// in signalgrid-resume.js, error codes and types in signalgrid-errors.js, call quality in
// signalgrid-stats.js, the waiting room and chat in signalgrid-call.js (with
// signalgrid-lobby.js and signalgrid-chat.js), the media controls and media state in signalgrid-media.js; this module
// re-exports what a page needs, so importing it is enough.
//
// Events (each a CustomEvent; `detail` as shown): `state {state}`, `connected`, `room-joined`
// and `rejoined {roomId, participants, waiting?}`, `admitted {roomId, participants}` (the
// room-joined that ends waiting), `waiting {roomId}`, `denied {roomId}`, `participant-waiting
// {socketId, userId, userName}` and `waiting-list {waiting}` (hosts), `settle-failed
// {socketId, action, code}`, `user-joined`, `user-left`, `peer-left`, `chat-message`
// (ChatMessage of signalgrid-chat.js), `chat-sent {id}`, `media-state {from, audio, video,
// screen, participant}`, `session-ending {minutesLeft}`, `call-ended`, the peer events of
// signalgrid-peers.js, and `sg-error` (a SignalgridErrorEvent). docs/web-client.md has them all.

import { isChatError } from './signalgrid-chat.js';
import { SignalgridCall } from './signalgrid-call.js';
import { FATAL_CODES } from './signalgrid-errors.js';
import { samplePeers } from './signalgrid-stats.js';
import { PeerMesh } from './signalgrid-peers.js';
import { backoffDelay, FINAL_CLOSE_CODES, SeatResume } from './signalgrid-resume.js';

export { ERROR_CODES, mediaErrorCode, SignalgridError, SignalgridErrorEvent } from './signalgrid-errors.js';
export { classifyQuality } from './signalgrid-stats.js';
export { CHAT_MAX_CHARS, chatTextOk } from './signalgrid-chat.js';
export { backoffDelay, FINAL_CLOSE_CODES, LEAVE_CLOSE_CODES, SeatResume } from './signalgrid-resume.js';

/** Relayed frames: while the socket is away they wait in a bounded outbox for the resume. */
const RELAYS = new Set(['offer', 'answer', 'ice-candidate']);
const OUTBOX_MAX = 256;

function detail(type, d) {
  return new CustomEvent(type, { detail: d });
}

/** The call: REST (signalgrid-rest.js), media (signalgrid-media.js), the waiting room and
 *  chat (signalgrid-call.js), the signaling socket with resume, the peer mesh. */
export class SignalgridClient extends SignalgridCall {
  /**
   * @param {object} o
   * @param {string} o.token            the platform's JWT
   * @param {string} [o.sessionId]      the session (for canJoin, generateRoom, endCall)
   * @param {string} [o.roomId]         the room id, if known (otherwise from generateRoom)
   * @param {string} [o.baseUrl]        REST base, default: this page's origin
   * @param {string[]} [o.signalingUrls] WebSocket bases (http(s) or ws(s) URLs of nodes or of
   *                                    the load balancer), tried in turn on reconnect;
   *                                    default: the REST base
   * @param {string} [o.userName]       display name sent with join-room
   * @param {object} [o.reconnect]      {baseMs=500, maxMs=15000, maxAttempts=Infinity}
   * @param {number} [o.timeoutMs]      bound of every REST call and of the socket opening
   * @param {object} [o.ack]            {every=32, idleMs=2000}: an `ack` goes after `every`
   *                                    frames, or `idleMs` after the first one not acknowledged
   */
  constructor(o) {
    super(o);
    this.signalingUrls = (o.signalingUrls && o.signalingUrls.length ? o.signalingUrls : [this.baseUrl])
      .map((u) => u.replace(/\/$/, ''));
    this.userName = o.userName || null;
    this.reconnectOpts = { baseMs: 500, maxMs: 15000, maxAttempts: Infinity, ...(o.reconnect || {}) };

    this.ws = null;
    this.socketId = null;
    this.nodeId = null;
    /** The peer connections, one per remote participant (signalgrid-peers.js). */
    this.mesh = new PeerMesh(this);
    this.participants = [];
    // idle | connecting | waiting | joined | denied | reconnecting | ended | failed | closed
    this.state = 'idle';
    this._endpoint = 0;
    this._attempt = 0;
    this._timer = null;
    this._closing = false;
    this._joined = false;
    this._drainSeen = false;
    this._joinPending = false;
    this._joinAttempt = 0;
    // The join retry after a passing failure; apart from `_timer` (reconnects), so that
    // `room-joined` can cancel it without touching a reconnect.
    this._joinRetry = null;
    /** Resume bookkeeping: last seq processed, resume token and window, acks. */
    this._resume = new SeatResume({
      sendAck: (seq) => this._send('ack', { seq }),
      ackEvery: o.ack?.every ?? 32,
      ackIdleMs: o.ack?.idleMs ?? 2000,
    });
    this._resumeTried = false; // the current socket was opened with resume parameters
    this._outbox = []; // relays sent while the socket was away, for the resume
    this._outboxOverflow = false;
    this._away = new Set(); // socket ids of peers whose signaling is away (user-reconnecting)
    // Back online (the browser says so): try at once rather than after the backoff.
    this._onOnline = () => {
      if (this.state === 'reconnecting' && !this.ws && !this._closing) this._connect();
    };
  }

  // ---------------------------------------------------------------- call life cycle

  /**
   * Connects and joins the room with `localStream` (may be null: receive only). Resolves
   * once the socket is open; `room-joined` tells when the room is joined.
   */
  async start(localStream = null) {
    this.localStream = localStream;
    this._closing = false;
    globalThis.addEventListener?.('online', this._onOnline);
    try {
      await this.fetchIceServers();
      if (!this.roomId) await this.generateRoom();
    } catch (e) {
      this._restError(e);
      this._setState('failed');
      throw e;
    }
    this._connect();
  }

  /** The WebSocket URL: `/ws?token=…`, plus `&resume=<token>&lastSeq=<n>` to resume. */
  _wsUrl(resume = false) {
    const base = this.signalingUrls[this._endpoint % this.signalingUrls.length];
    const u = new URL(base.replace(/^http/, 'ws') + '/ws');
    u.searchParams.set('token', this.token);
    if (resume) for (const [k, v] of Object.entries(this._resume.params())) u.searchParams.set(k, v);
    return u.toString();
  }

  /** The highest `seq` processed on this seat (0 before any). */
  get lastSeq() {
    return this._resume.lastSeq;
  }

  /** Whether the signaling of the participant `socketId` is away (it may resume). */
  isAway(socketId) {
    return this._away.has(socketId);
  }

  _setState(s, extra = {}) {
    if (this.state === s) return;
    this.state = s;
    this.dispatchEvent(detail('state', { state: s, ...extra }));
  }

  _connect() {
    clearTimeout(this._timer);
    clearTimeout(this._joinRetry);
    this._setState(this._attempt > 0 || this._joined ? 'reconnecting' : 'connecting', { attempt: this._attempt });
    const resume = this._resume.canResume(Date.now());
    if (!resume && this._resume.away) {
      // The window has passed (or the server offers no resume): join again from scratch.
      this._resume.forget();
      this._outbox = [];
    }
    this._resumeTried = resume;
    let ws;
    try {
      ws = new WebSocket(this._wsUrl(resume));
    } catch (e) {
      this._emitError('NETWORK_ERROR', String(e), {}, { source: 'ws' });
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    this._drainSeen = false;
    this._fatalSeen = null;
    const openGuard = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) ws.close();
    }, this.timeoutMs);
    ws.onopen = () => clearTimeout(openGuard);
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch (_) {
        return;
      }
      this._onMessage(msg);
    };
    ws.onclose = (ev) => {
      clearTimeout(openGuard);
      if (this.ws !== ws) return;
      this.ws = null;
      this._resume.lose(Date.now());
      this.dispatchEvent(detail('socket-closed', { code: ev.code, reason: ev.reason }));
      if (this._closing || this.state === 'ended') return;
      if (FINAL_CLOSE_CODES.has(ev.code) || this._fatalSeen) {
        // Replaced (4001), kicked or room closed (4003): the seat is gone, resuming cannot help.
        this._resume.forget();
        this._setState('failed', { code: this._fatalSeen || (ev.code === 4001 ? 'SESSION_REPLACED' : 'KICKED'), closeCode: ev.code });
        this.mesh.closeAll();
        return;
      }
      if (!this._drainSeen && ev.code !== 1012) {
        this._emitError('NETWORK_ERROR', 'The connection to the call service was lost. Reconnecting…',
          { closeCode: ev.code }, { source: 'ws' });
      }
      // Another node next time: a draining node refuses new sockets.
      if (this.signalingUrls.length > 1) this._endpoint += 1;
      this._scheduleReconnect(this._drainSeen || ev.code === 1012);
    };
  }

  _scheduleReconnect(soon = false) {
    const o = this.reconnectOpts;
    if (this._attempt >= o.maxAttempts) {
      this._emitError('RECONNECT_EXHAUSTED', 'Could not reconnect to the call service.', { attempts: this._attempt },
        { source: 'ws', fatal: true });
      this._setState('failed', { code: 'RECONNECT_EXHAUSTED' });
      return;
    }
    const n = this._attempt;
    this._attempt += 1;
    // A drain is planned: the first retry goes at once (with a little jitter) to another node.
    let delay = soon && n === 0 ? backoffDelay(0, 100, 100) : backoffDelay(n, o.baseMs, o.maxMs);
    // While the seat can be resumed, try again before its window closes.
    const left = this._resume.remainingMs(Date.now());
    const resume = left > 0;
    if (resume) delay = Math.min(delay, Math.max(0, left - 250));
    this._setState('reconnecting', { attempt: this._attempt, delayMs: delay, resume });
    this.dispatchEvent(detail('reconnecting', { attempt: this._attempt, delayMs: delay, resume }));
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _send(event, data) {
    const open = this.ws && this.ws.readyState === WebSocket.OPEN;
    if (RELAYS.has(event) && this._resume.away && (!open || this._resumeTried)) {
      // The seat is away: keep the relay for the resume (dropped if a rejoin follows).
      if (this._outbox.length >= OUTBOX_MAX) {
        this._outbox.shift();
        this._outboxOverflow = true;
      }
      this._outbox.push({ event, data });
      return false;
    }
    if (open) {
      this.ws.send(JSON.stringify({ event, data }));
      return true;
    }
    return false;
  }

  /** One server frame: processed once per `seq` (a replay of a processed one is skipped). */
  _onMessage(msg) {
    if (!msg || typeof msg.event !== 'string') return;
    if (msg.event !== 'connected' && !this._resume.accept(msg.seq)) return;
    this._onFrame(msg.event, msg.data || {});
  }

  _onConnected(data) {
    const outcome = this._resume.onConnected(data, this._resumeTried);
    this._resumeTried = false;
    this.nodeId = data.nodeId;
    if (outcome !== 'resumed') {
      // A new seat: relays kept for the old one are void (a rejoin makes new peer connections).
      this._outbox = [];
      this._outboxOverflow = false;
      // Nor will the old seat's chat answers come, and its waiting (if any) is over.
      this.chat.dropPending();
      this.lobby.reset();
      this._mediaSent = null;
      this.socketId = data.socketId;
      this.dispatchEvent(detail('connected', data));
      this._join();
      return;
    }
    // The same seat, room and peer connections: send what waited, no join-room.
    this._attempt = 0;
    const lost = data.lost === true || this._outboxOverflow;
    const waiting = this._outbox.splice(0);
    this._outboxOverflow = false;
    for (const f of waiting) this._send(f.event, f.data);
    this.dispatchEvent(detail('connected', data));
    if (this._joined) {
      this._setState('joined', { resumed: true, lost });
    } else if (this.lobby.isWaiting) {
      this._setState('waiting', { resumed: true }); // still waiting: no join-room again
    } else {
      this._join(); // the join may not have been answered before the loss
    }
    this._syncMediaState(); // a change made while away
    this.dispatchEvent(detail('resumed', { socketId: this.socketId, nodeId: this.nodeId, lost: data.lost === true }));
    // Frames may be gone: check every negotiation with an ICE restart (never a new connection).
    if (lost) this.mesh.restartIce('resumed-lost');
  }

  _onFrame(event, data) {
    switch (event) {
      case 'connected':
        this._onConnected(data);
        break;
      case 'room-joined': {
        const again = this._joined;
        this._joined = true;
        this._joinPending = false;
        // A retry scheduled on an error taken for this join's answer must not join again.
        clearTimeout(this._joinRetry);
        this._attempt = 0;
        this._joinAttempt = 0;
        this.participants = data.participants || [];
        this._away.clear();
        this.remoteMedia.clear();
        this._rememberMedia(this.participants);
        const admitted = this.lobby.onRoomJoined(data);
        // After a reconnect the old peer connections belong to our old socket: start over.
        this.mesh.closeAll();
        this._setState('joined', { admitted });
        if (admitted) this.dispatchEvent(detail('admitted', data));
        this.dispatchEvent(detail(again ? 'rejoined' : 'room-joined', data));
        // The newcomer offers to everyone already in the room.
        for (const p of this.participants) {
          if (p.socketId !== this.socketId) this.mesh.peer(p.socketId, p, true);
        }
        this._syncMediaState(true); // once after joining
        break;
      }
      case 'waiting':
      case 'participant-waiting':
      case 'chat-message':
      case 'chat-sent':
      case 'media-state':
      case 'session-ending':
        this._onCallFrame(event, data);
        break;
      case 'user-joined':
        this.lobby.leaves(data.socketId); // a waiting client admitted (by us or another host)
        this.participants = this.participants.filter((p) => p.socketId !== data.socketId).concat([data]);
        this.dispatchEvent(detail('user-joined', data));
        // The newcomer offers: we wait for its offer (the peer connection is made then).
        break;
      case 'user-left': {
        this.remoteMedia.delete(data.socketId);
        if (this.lobby.leaves(data.socketId)) {
          // A waiting client left, or was denied: it was never in the call.
          this.dispatchEvent(detail('user-left', data));
          break;
        }
        const participant = this.participants.find((p) => p.socketId === data.socketId) || null;
        this.participants = this.participants.filter((p) => p.socketId !== data.socketId);
        this._away.delete(data.socketId);
        this.mesh.close(data.socketId);
        this.dispatchEvent(detail('user-left', data));
        this.dispatchEvent(detail('peer-left', { socketId: data.socketId, userId: data.userId, participant, reason: data.reason || null }));
        break;
      }
      case 'user-reconnecting':
      case 'user-reconnected': {
        const away = event === 'user-reconnecting';
        if (away) this._away.add(data.socketId);
        else this._away.delete(data.socketId);
        const participant = this.participants.find((p) => p.socketId === data.socketId) || null;
        this.dispatchEvent(detail(away ? 'peer-reconnecting' : 'peer-reconnected', { socketId: data.socketId, userId: data.userId, participant }));
        break;
      }
      case 'offer':
        this.mesh.onOffer(data.from, data.offer);
        break;
      case 'answer':
        this.mesh.onAnswer(data.from, data.answer);
        break;
      case 'ice-candidate':
        this.mesh.onCandidate(data.from, data.candidate);
        break;
      case 'call-ended':
        this._setState('ended', data);
        this.dispatchEvent(detail('call-ended', data));
        this._shutdown();
        break;
      case 'error': {
        const code = data.code || 'INTERNAL';
        const details = data.details || {};
        // Answers to a chat, a media state, an admit or deny, or our own admission: never
        // the join's answer, never the end of the call (ROOM_FULL to an admit included).
        const chat = isChatError(details);
        if (chat || details.event === 'media-state' || this.lobby.onError(code, details)) {
          if (chat) this.chat.onError(code, data.message, details);
          this._emitError(code, data.message, details, { source: 'ws', fatal: false });
          break;
        }
        if (code === 'NODE_DRAINING') this._drainSeen = true;
        const fatal = FATAL_CODES.has(code);
        if (fatal) this._fatalSeen = code;
        this._emitError(code, data.message, data.details, { source: 'ws', fatal });
        // PEER_NOT_FOUND never answers a join (it answers a relay, say a candidate of a peer
        // connection from before a reconnect); RESUME_FAILED answers the socket's opening
        // (the join that falls back from it is on its way).
        if (this._joinPending && !fatal && !['NODE_DRAINING', 'PEER_NOT_FOUND', 'RESUME_FAILED'].includes(code)) {
          // The answer to join-room is a passing failure (store or cluster unavailable,
          // rate limited): try the join again after a backoff, on the same socket.
          this._joinPending = false;
          const ws = this.ws;
          const delay = backoffDelay(this._joinAttempt++, this.reconnectOpts.baseMs, this.reconnectOpts.maxMs);
          clearTimeout(this._joinRetry);
          this._joinRetry = setTimeout(() => { if (this.ws === ws) this._join(); }, delay);
        }
        if (fatal && code !== 'SESSION_REPLACED') {
          // A refused join (or an operator's kick): nothing will change by retrying.
          this._setState('failed', { code });
          this._shutdown();
        }
        break;
      }
      default:
        this.dispatchEvent(detail('unknown-event', { event, data }));
    }
  }

  async _join() {
    const ws = this.ws;
    // Short-lived TURN credentials may have expired during a long call: fetch them again
    // before joining (keeping the old ones if the REST base is unreachable, say drained).
    if (this._iceExpiry && Date.now() >= this._iceExpiry) {
      await this.fetchIceServers().catch(() => this.iceServers);
    }
    if (this.ws !== ws) return;
    this._joinPending = true;
    this._send('join-room', this.userName ? { roomId: this.roomId, userName: this.userName } : { roomId: this.roomId });
  }

  /** socketId -> peer ({pc, info, polite, stream, …}) of every remote participant. */
  get peers() {
    return this.mesh.peers;
  }

  _emit(type, d) {
    this.dispatchEvent(detail(type, d));
  }

  // ---------------------------------------------------------------- ending

  /** Ends the call for everyone: sends `call-ended` (the server stores the end); falls back
   *  to `POST /end/:sessionId` when the socket is not open. */
  async endCall() {
    if (this._send('call-ended', { roomId: this.roomId })) return;
    try {
      const r = await this._rest('POST', `/api/video-calls/end/${encodeURIComponent(this.sessionId)}`);
      this._setState('ended', { duration: r.duration });
      this.dispatchEvent(detail('call-ended', { roomId: this.roomId, duration: r.duration, endedBy: null }));
    } catch (e) {
      this._restError(e);
    }
    this._shutdown();
  }

  /** Leaves the room (the call goes on for the others) and closes everything. */
  leave() {
    this._send('leave-room', { roomId: this.roomId });
    this._shutdown();
    this._setState('closed');
  }

  _shutdown() {
    this._closing = true;
    clearTimeout(this._timer);
    clearTimeout(this._joinRetry);
    this._resume.forget();
    this._outbox = [];
    this.chat.dropPending();
    globalThis.removeEventListener?.('online', this._onOnline);
    this.mesh.closeAll();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try {
        ws.close(1000);
      } catch (_) {
        /* already closed */
      }
    }
  }

  // ---------------------------------------------------------------- statistics

  /**
   * Samples getStats over every peer: round-trip time (ms), packet loss (fraction over the
   * interval since the previous sample), inbound and outbound bitrate (bit/s), video frames
   * decoded, and a quality verdict: good, fair or poor.
   */
  async sampleStats() {
    const { sample, next } = await samplePeers(this.peers, this._lastStats);
    this._lastStats = next;
    return sample;
  }
}
