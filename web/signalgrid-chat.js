// signalgrid-chat.js: the call's text chat (PROTOCOL.md section 8, details in section 10).
// `sendChat(text)` sends `chat-message {text}` and answers a promise that the server's
// `chat-sent {id}` resolves; the server answers a socket's chat frames in the order they
// were sent (`chat-sent`, or an `error` whose details name `chat-message`), so the answers
// settle the pending sends first in, first out. Part of the client library; the
// SignalgridClient that owns it (signalgrid-client.js) hands it the chat frames.

import { SignalgridError } from './signalgrid-errors.js';

/** Longest chat text, in Unicode code points (PROTOCOL.md section 10). */
export const CHAT_MAX_CHARS = 2000;

/**
 * A chat message from another member, as the `chat-message` event's detail carries it.
 * @typedef {object} ChatMessage
 * @property {string} id        the server's message id
 * @property {string} from      the sender's socket id
 * @property {string} userId    the sender's user id
 * @property {string} userName  the sender's display name
 * @property {string} text      the text (1 to 2000 code points); show it as text, never HTML
 * @property {string} sentAt    when the server handed it on (ISO 8601)
 * @property {object|null} participant  the sender as `participants` lists it (null if unknown)
 */

/** Whether `text` is a chat text the server takes: a string of 1 to 2000 code points. */
export function chatTextOk(text) {
  if (typeof text !== 'string') return false;
  const n = [...text].length;
  return n >= 1 && n <= CHAT_MAX_CHARS;
}

/** Whether an `error` frame's details say it answers a `chat-message`. */
export function isChatError(details) {
  if (!details) return false;
  return details.event === 'chat-message' || (typeof details.reason === 'string' && details.reason.startsWith('chat-message'));
}

export class ChatChannel {
  /** @param {import('./signalgrid-client.js').SignalgridClient} client the owner */
  constructor(client) {
    this.client = client;
    /** Sends awaiting their answer, oldest first: {text, resolve, reject}. */
    this.pending = [];
  }

  /**
   * Sends `text`; resolves with `{id}` (the server's `chat-sent`), rejects with a
   * SignalgridError: `BAD_REQUEST` (not 1 to 2000 code points; nothing is sent),
   * `NETWORK_ERROR` (the socket is not open, or the seat was lost before the answer),
   * or the server's code (`FORBIDDEN`: not in a room, or still waiting; `RATE_LIMITED`
   * with `details.retryAfterMs`).
   * @param {string} text
   * @returns {Promise<{id: string}>}
   */
  send(text) {
    if (!chatTextOk(text)) {
      return Promise.reject(new SignalgridError('BAD_REQUEST', `A chat message has 1 to ${CHAT_MAX_CHARS} characters.`,
        { event: 'chat-message' }));
    }
    return new Promise((resolve, reject) => {
      if (!this.client._send('chat-message', { text })) {
        reject(new SignalgridError('NETWORK_ERROR', 'Not connected to the call service.', { event: 'chat-message' }));
        return;
      }
      this.pending.push({ resolve, reject });
    });
  }

  /** `chat-sent {id}`: the oldest pending send went out. */
  onSent(data) {
    const p = this.pending.shift();
    this.client._emit('chat-sent', { id: data.id });
    if (p) p.resolve({ id: data.id });
  }

  /** An `error` frame answering a chat send: the oldest pending send failed. */
  onError(code, message, details) {
    const p = this.pending.shift();
    if (p) p.reject(new SignalgridError(code, message, details));
  }

  /** The seat is gone (a new socket id, or the call is over): no answer will come. */
  dropPending() {
    for (const p of this.pending.splice(0)) {
      p.reject(new SignalgridError('NETWORK_ERROR', 'The connection was lost before the message was confirmed.',
        { event: 'chat-message' }));
    }
  }
}
