// signalgrid-rest.js: the REST half of the client library: the join check, the room id and
// the ICE servers, each call bounded by `timeoutMs`, errors in the server's shape. Part of the
// client library; SignalgridClient (signalgrid-client.js) extends it.

import { FATAL_CODES, SignalgridError, SignalgridErrorEvent } from './signalgrid-errors.js';

export class SignalgridRest extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.token        the platform's JWT (sent as `x-auth-token`)
   * @param {string} [o.sessionId]  the session (for canJoin, generateRoom, endCall)
   * @param {string} [o.roomId]     the room id, if known (otherwise from generateRoom)
   * @param {string} [o.baseUrl]    REST base, default: this page's origin
   * @param {number} [o.timeoutMs]  bound of every REST call (ms; default 10000)
   * @throws {TypeError} without a token
   */
  constructor(o) {
    super();
    if (!o || !o.token) throw new TypeError('SignalgridClient: a token is required');
    this.token = o.token;
    this.sessionId = o.sessionId || null;
    this.roomId = o.roomId || null;
    this.baseUrl = (o.baseUrl || globalThis.location?.origin || '').replace(/\/$/, '');
    this.timeoutMs = o.timeoutMs || 10000;
    this.iceServers = null;
  }

  /** Raises `sg-error` (a SignalgridErrorEvent). */
  _emitError(code, message, details, extra) {
    this.dispatchEvent(new SignalgridErrorEvent(code, message, details, extra));
  }

  async _rest(method, path) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), this.timeoutMs);
    let res;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers: { 'x-auth-token': this.token },
        signal: ctl.signal,
      });
    } catch (e) {
      throw new SignalgridError('NETWORK_ERROR', 'The call service could not be reached. Check your connection.', { cause: String(e) });
    } finally {
      clearTimeout(t);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const e = (body && body.error) || {};
      throw new SignalgridError(e.code || 'INTERNAL', e.message, e.details || {}, res.status,
        e.requestId || res.headers.get('x-request-id'));
    }
    return body;
  }

  _restError(e) {
    const code = e.code || 'NETWORK_ERROR';
    this._emitError(code, e.message, e.details, { source: 'rest', requestId: e.requestId, fatal: FATAL_CODES.has(code) });
  }

  /** `GET /api/video-calls/can-join/:sessionId`. */
  canJoin(sessionId = this.sessionId) {
    return this._rest('GET', `/api/video-calls/can-join/${encodeURIComponent(sessionId)}`);
  }

  /** `POST /api/video-calls/generate-room/:sessionId`; remembers the room id. */
  async generateRoom(sessionId = this.sessionId) {
    const r = await this._rest('POST', `/api/video-calls/generate-room/${encodeURIComponent(sessionId)}`);
    this.roomId = r.roomId;
    return r;
  }

  /** `GET /api/video-calls/config`: the ICE servers (cached; refetched after its ttl). */
  async fetchIceServers() {
    if (this.iceServers && (!this._iceExpiry || Date.now() < this._iceExpiry)) return this.iceServers;
    const r = await this._rest('GET', '/api/video-calls/config');
    this.iceServers = r.iceServers || [];
    this._iceExpiry = r.ttl ? Date.now() + (r.ttl * 1000) / 2 : 0;
    return this.iceServers;
  }
}
