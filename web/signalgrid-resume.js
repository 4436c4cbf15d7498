// signalgrid-resume.js: the bookkeeping that lets a dropped signaling socket resume its seat
// instead of joining again (docs/protocol.md, "Resume"): the last `seq` processed, the
// resume token of the latest `connected`, the resume window, and the `ack`s. Part of the
// client library; signalgrid-client.js owns one per client and does the reconnecting.

/** Close codes after which the seat is gone for good: 4001 replaced, 4003 kicked or room
 *  closed (or removed at the end of the session). No resume, no rejoin. */
export const FINAL_CLOSE_CODES = new Set([4001, 4003]);

/** Close codes of a departure the page asked for (1000 normal, 1001 page left): the server
 *  lets the seat go at once, so there is nothing to resume. */
export const LEAVE_CLOSE_CODES = new Set([1000, 1001]);

/** Backoff delay (ms) before reconnect attempt `n` (0-based): full jitter over
 *  min(cap, base * 2^n). */
export function backoffDelay(n, base = 500, cap = 15000, random = Math.random) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(n, 20));
  return Math.floor(random() * ceiling);
}

export class SeatResume {
  /**
   * @param {object} o
   * @param {(seq: number) => boolean} o.sendAck sends `ack {seq}`; false when it could not
   * @param {number} [o.ackEvery=32]   frames processed since the last ack that send one at once
   * @param {number} [o.ackIdleMs=2000] otherwise an ack goes at most this long (ms) after
   *                                    the first frame not acknowledged
   */
  constructor({ sendAck, ackEvery = 32, ackIdleMs = 2000 }) {
    this.sendAck = sendAck;
    this.ackEvery = ackEvery;
    this.ackIdleMs = ackIdleMs;
    /** The resume token of the latest `connected` (null: none, or the server has no resume). */
    this.token = null;
    /** The resume window (ms) the server announced. */
    this.windowMs = 0;
    /** The highest `seq` processed on this seat (0: none yet). */
    this.lastSeq = 0;
    /** The highest `seq` acknowledged. */
    this.acked = 0;
    /** When (ms since the epoch) the socket was lost; null while connected. */
    this.lostAt = null;
    this._timer = null;
  }

  /** True between the loss of the socket and the `connected` that settles it. */
  get away() {
    return this.lostAt != null;
  }

  /**
   * Takes a `connected` frame's data. `attempted`: the socket was opened with resume
   * parameters. Answers 'resumed' (same seat, keep everything), 'failed' (a resume was
   * attempted and the server made a new seat) or 'fresh' (a first connection, or a rejoin).
   * A new seat counts `seq` from 1 again.
   */
  onConnected(data, attempted) {
    this.token = typeof data.resumeToken === 'string' ? data.resumeToken : null;
    this.windowMs = Number(data.resumeWindowMs) || 0;
    this.lostAt = null;
    if (attempted && data.resumed === true) {
      // Frames processed before the loss and not acknowledged: acknowledge them soon.
      if (this.lastSeq > this.acked) this._arm();
      return 'resumed';
    }
    this.stop();
    this.lastSeq = 0;
    this.acked = 0;
    return attempted ? 'failed' : 'fresh';
  }

  /**
   * Whether the frame with this `seq` is to be processed: false for one processed already
   * (a replay after a resume). Counts it toward the next `ack`.
   */
  accept(seq) {
    if (!Number.isInteger(seq)) return true;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    if (this.lastSeq - this.acked >= this.ackEvery) this.ackNow();
    else this._arm();
    return true;
  }

  /** Sends `ack` for everything processed, if anything is not acknowledged yet. */
  ackNow() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this.lastSeq > this.acked && this.sendAck(this.lastSeq)) this.acked = this.lastSeq;
  }

  _arm() {
    if (this._timer == null) this._timer = setTimeout(() => { this._timer = null; this.ackNow(); }, this.ackIdleMs);
  }

  /** The socket was lost at `now` (ms); a later loss before the next `connected` keeps the first time. */
  lose(now) {
    this.stop();
    if (this.lostAt == null) this.lostAt = now;
  }

  /** How long (ms) a resume may still be attempted; 0 when it may not. */
  remainingMs(now) {
    if (!this.token || this.lostAt == null) return 0;
    return Math.max(0, this.lostAt + this.windowMs - now);
  }

  /** Whether the next socket should resume (a token, and the window not passed). */
  canResume(now) {
    return this.remainingMs(now) > 0;
  }

  /** The query parameters of a resume: `{resume, lastSeq}`. */
  params() {
    return { resume: this.token, lastSeq: String(this.lastSeq) };
  }

  /** Gives up on the seat: the next connection is a new one. */
  forget() {
    this.stop();
    this.token = null;
    this.lostAt = null;
  }

  /** Stops the ack timer (the socket is gone). */
  stop() {
    clearTimeout(this._timer);
    this._timer = null;
  }
}
