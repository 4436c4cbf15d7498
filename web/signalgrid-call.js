// signalgrid-call.js: the call itself (PROTOCOL.md section 8): the waiting room
// (signalgrid-lobby.js), the chat (signalgrid-chat.js) and the others' media state and the
// end-of-session warning, as frames and as methods of the client. Part of the client library:
// SignalgridClient (signalgrid-client.js) extends SignalgridCall, which extends
// SignalgridMedia (signalgrid-media.js); the socket, state and join (`this._send`,
// `this._setState`, `this._join`) are the client's.

import { ChatChannel } from './signalgrid-chat.js';
import { WaitingRoom } from './signalgrid-lobby.js';
import { SignalgridMedia } from './signalgrid-media.js';

export class SignalgridCall extends SignalgridMedia {
  constructor(o) {
    super(o);
    /** The waiting room: this client's waiting, and the hosts' waiting list (signalgrid-lobby.js). */
    this.lobby = new WaitingRoom(this);
    /** The chat's pending sends (signalgrid-chat.js). */
    this.chat = new ChatChannel(this);
  }

  /** Hosts: lets waiting client `socketId` in (`admit`). False when the socket is not open.
   *  Refusals: `settle-failed` and `sg-error` (ROOM_FULL, PEER_NOT_FOUND, NOT_HOST). */
  admit(socketId) {
    return this.lobby.settle('admit', socketId);
  }

  /** Hosts: turns waiting client `socketId` away (`deny`); as `admit` otherwise. */
  deny(socketId) {
    return this.lobby.settle('deny', socketId);
  }

  /** After `denied`: asks to be let in again (`join-room`; `waiting` follows). */
  askAgain() {
    if (this.state !== 'denied') return false;
    this._join();
    return true;
  }

  /** Hosts: the clients waiting now, oldest first ([{socketId, userId, userName}]). */
  get waiting() {
    return this.lobby.list();
  }

  /** Sends a chat message; resolves `{id}` on `chat-sent`, rejects with a SignalgridError
   *  (signalgrid-chat.js has the codes). @param {string} text 1 to 2000 code points */
  sendChat(text) {
    return this.chat.send(text);
  }

  /** The frames of the call itself: `waiting`, `participant-waiting`, `chat-message`,
   *  `chat-sent`, `media-state`, `session-ending`. */
  _onCallFrame(event, data) {
    switch (event) {
      case 'waiting':
        // The join is answered (not a failure): no retry; a host lets us in or not.
        this._joinPending = false;
        clearTimeout(this._joinRetry);
        this._attempt = 0;
        this._joinAttempt = 0;
        this.lobby.onWaiting(data);
        this._syncMediaState(true); // remembered for the admission
        break;
      case 'participant-waiting':
        this.lobby.onParticipantWaiting(data);
        break;
      case 'chat-message': {
        const participant = this.participants.find((p) => p.socketId === data.from) || null;
        this._emit('chat-message', { ...data, participant });
        break;
      }
      case 'chat-sent':
        this.chat.onSent(data);
        break;
      case 'media-state':
        this._onRemoteMedia(data);
        break;
      case 'session-ending':
        this._emit('session-ending', { minutesLeft: data.minutesLeft });
        break;
      default:
        break;
    }
  }
}
