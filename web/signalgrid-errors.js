// signalgrid-errors.js: what can go wrong in a call, as the client library reports it. Every
// error code (the server's and the client's own), which of them end the call for good, the
// typed event and error the library raises, and the mapping of camera and microphone
// failures to codes. Part of the client library; signalgrid-client.js re-exports it all.

/** Every error code the server may send, REST or WebSocket, plus the client's own. */
export const ERROR_CODES = Object.freeze([
  'UNAUTHORIZED', 'INVALID_SESSION_ID', 'SESSION_NOT_FOUND', 'FORBIDDEN', 'SESSION_CLOSED',
  'PAYMENT_REQUIRED', 'OUTSIDE_TIME_WINDOW', 'ROOM_FULL', 'ROOM_CLOSED', 'KICKED',
  'CLUSTER_UNAVAILABLE', 'VALIDATION_ERROR', 'RATE_LIMITED', 'CALL_NOT_STARTED', 'NOT_FOUND',
  'METHOD_NOT_ALLOWED', 'PEER_NOT_FOUND', 'SESSION_REPLACED', 'PAYLOAD_TOO_LARGE', 'BAD_REQUEST',
  'UNKNOWN_EVENT', 'NODE_DRAINING', 'CONNECTION_LIMIT', 'ORIGIN_NOT_ALLOWED', 'SLOW_CONSUMER',
  'HEARTBEAT_TIMEOUT', 'STORE_UNAVAILABLE', 'INTERNAL', 'CONNECT_RATE_LIMITED',
  // Client-side codes (not sent by the server).
  'NETWORK_ERROR', 'MEDIA_PERMISSION_DENIED', 'MEDIA_UNAVAILABLE', 'SCREEN_SHARE_FAILED',
  'WEBRTC_FAILED', 'RECONNECT_EXHAUSTED',
]);

/** Codes after which joining again cannot help: the client stops reconnecting. */
export const FATAL_CODES = new Set([
  'UNAUTHORIZED', 'INVALID_SESSION_ID', 'SESSION_NOT_FOUND', 'FORBIDDEN', 'SESSION_CLOSED',
  'PAYMENT_REQUIRED', 'OUTSIDE_TIME_WINDOW', 'ROOM_FULL', 'ROOM_CLOSED', 'KICKED',
  'SESSION_REPLACED', 'ORIGIN_NOT_ALLOWED',
]);

/** A typed error event: `event.code` is one of ERROR_CODES; `type` is `sg-error`. */
export class SignalgridErrorEvent extends Event {
  constructor(code, message, details = {}, extra = {}) {
    super('sg-error');
    this.code = code;
    this.message = message || code;
    this.details = details || {};
    /** Where it came from: 'rest', 'ws', 'media' or 'webrtc'. */
    this.source = extra.source || 'ws';
    /** True when the client gives up on the call (no reconnect follows). */
    this.fatal = !!extra.fatal;
    this.requestId = extra.requestId || null;
  }
}

/** An error thrown by the REST helpers, carrying the server's error shape. */
export class SignalgridError extends Error {
  constructor(code, message, details = {}, status = 0, requestId = null) {
    super(message || code);
    this.name = 'SignalgridError';
    this.code = code;
    this.details = details;
    this.status = status;
    this.requestId = requestId;
  }
}

/** Maps a getUserMedia / getDisplayMedia failure to a client error code. */
export function mediaErrorCode(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') {
    return 'MEDIA_PERMISSION_DENIED';
  }
  return 'MEDIA_UNAVAILABLE';
}
