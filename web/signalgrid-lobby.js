// signalgrid-lobby.js: the waiting room (PROTOCOL.md section 8, details in section 10).
// A `client` who joins a room whose session has `waitingRoom: true` is answered `waiting`
// instead of `room-joined`, and hears nothing of the room until a host (the psychologist,
// or an admin) admits them (`room-joined`, emitted here as `admitted`) or denies them
// (`error ADMISSION_DENIED`, emitted as `denied`; the socket stays open and `askAgain()`
// waits again). A waiting client makes no RTCPeerConnection: nobody offers to it, and it
// offers only once admitted (as the newcomer of the room). Hosts keep the waiting list:
// `room-joined.waiting`, then `participant-waiting` for each newcomer; a waiting client who
// leaves, is denied or is admitted (by any host) leaves the list. Part of the client
// library; the SignalgridClient that owns it (signalgrid-client.js) hands it the frames.

/**
 * A client waiting to be let in, as hosts see it.
 * @typedef {object} Waiter
 * @property {string} socketId  its socket id: what `admit` and `deny` take
 * @property {string} userId
 * @property {string} userName
 */

export class WaitingRoom {
  /** @param {import('./signalgrid-client.js').SignalgridClient} client the owner */
  constructor(client) {
    this.client = client;
    /** True while this client waits to be let in (from `waiting` to `room-joined` or a denial). */
    this.isWaiting = false;
    /** Hosts: socketId -> Waiter, the clients waiting now. */
    this.waiting = new Map();
    /** Hosts: socketId -> 'admit' | 'deny', sent and not answered yet. */
    this.settling = new Map();
  }

  /** The waiting list (hosts), oldest first. @returns {Waiter[]} */
  list() {
    return [...this.waiting.values()];
  }

  /**
   * Sends `admit {socketId}` or `deny {socketId}`. Answers false when the socket is not
   * open. The outcome comes as `waiting-list` (the client left the list); a refusal as
   * `settle-failed {socketId, action, code}` plus an `sg-error`: `ROOM_FULL` (the client
   * keeps waiting), `PEER_NOT_FOUND` (not waiting any more), `NOT_HOST`.
   */
  settle(action, socketId) {
    if (!this.client._send(action, { socketId })) return false;
    this.settling.set(socketId, action);
    return true;
  }

  _changed() {
    this.client._emit('waiting-list', { waiting: this.list() });
  }

  /** `waiting {roomId}`: this client waits (a join answered, not a failure). */
  onWaiting(data) {
    this.isWaiting = true;
    this.client._setState('waiting', { roomId: data.roomId });
    this.client._emit('waiting', { roomId: data.roomId });
  }

  /**
   * `room-joined`: answers whether it admits this client (it was waiting). A host's
   * `room-joined.waiting` replaces the waiting list.
   */
  onRoomJoined(data) {
    const admitted = this.isWaiting;
    this.isWaiting = false;
    if (Array.isArray(data.waiting)) {
      this.waiting = new Map(data.waiting.map((w) => [w.socketId, w]));
      this.settling.clear();
      for (const w of data.waiting) this.client._emit('participant-waiting', w);
      this._changed();
    }
    return admitted;
  }

  /** `participant-waiting {socketId, userId, userName}` (hosts). */
  onParticipantWaiting(data) {
    this.waiting.set(data.socketId, data);
    this.client._emit('participant-waiting', data);
    this._changed();
  }

  /** `user-joined` or `user-left` of `socketId`: it left the waiting list if it was on it.
   *  Answers whether it was a waiting client. */
  leaves(socketId) {
    this.settling.delete(socketId);
    if (!this.waiting.delete(socketId)) return false;
    this._changed();
    return true;
  }

  /**
   * An `error` frame: answers 'denied' (ADMISSION_DENIED: this client was refused),
   * 'settle' (the answer to one of our `admit`/`deny`, never fatal to the call) or null.
   */
  onError(code, details) {
    if (code === 'ADMISSION_DENIED') {
      this.isWaiting = false;
      this.client._setState('denied', { roomId: details.roomId });
      this.client._emit('denied', { roomId: details.roomId || this.client.roomId });
      return 'denied';
    }
    const id = details && details.socketId;
    if (id && this.settling.has(id)) {
      const action = this.settling.get(id);
      this.settling.delete(id);
      this.client._emit('settle-failed', { socketId: id, action, code });
      return 'settle';
    }
    return null;
  }

  /** A new seat (a rejoin): the waiting list comes again with its `room-joined`. */
  reset() {
    this.isWaiting = false;
    this.settling.clear();
    if (this.waiting.size) {
      this.waiting.clear();
      this._changed();
    }
  }
}
