// signalgrid-media.js: the local media of a call and what the others are told of it
// (PROTOCOL.md section 8, "Media state"). The controls (mute, camera, screen share) change
// the tracks sent on every peer connection; after each change, and once after joining,
// the client sends `media-state {audio, video, screen}`, which the others receive as
// `media-state {from, audio, video, screen}` (never echoed to its sender); `room-joined`
// lists each participant's last one as `mediaState`. Part of the client library:
// SignalgridClient (signalgrid-client.js) extends SignalgridMedia, which extends
// SignalgridRest; the peer mesh and the socket (`this.mesh`, `this._send`) are the
// client's.

import { SignalgridRest } from './signalgrid-rest.js';

/**
 * What a participant sends, as `media-state` carries it.
 * @typedef {object} MediaState
 * @property {boolean} audio   the microphone is on (a track, enabled: not muted)
 * @property {boolean} video   the camera is on (a live camera track; independent of sharing)
 * @property {boolean} screen  a screen is being shared (it replaces the camera's picture)
 */

const sameState = (a, b) => !!a && !!b && a.audio === b.audio && a.video === b.video && a.screen === b.screen;

export class SignalgridMedia extends SignalgridRest {
  constructor(o) {
    super(o);
    this.localStream = null;
    this._videoOverride = null; // a track that replaces the camera (screen share)
    /** The last `media-state` sent on this seat (null: none yet). */
    this._mediaSent = null;
    /** socketId -> MediaState of the remote participants (from `media-state`, `room-joined`). */
    this.remoteMedia = new Map();
  }

  /** What this client sends now. @returns {MediaState} */
  get mediaState() {
    const s = this.localStream;
    const live = (t) => !!t && t.enabled !== false && t.readyState !== 'ended';
    return {
      audio: live(s ? s.getAudioTracks()[0] : null),
      video: live(s ? s.getVideoTracks()[0] : null),
      screen: !!this._videoOverride,
    };
  }

  /**
   * Sends `media-state` if it changed since the last one sent (`force`: in any case), and
   * only while in a room or waiting (a socket in no room would be refused `FORBIDDEN`).
   * A change made while the socket is away goes after the resume.
   */
  _syncMediaState(force = false) {
    if (!this._joined && !this.lobby?.isWaiting) return;
    const st = this.mediaState;
    if (!force && sameState(st, this._mediaSent)) return;
    if (this._send('media-state', st)) this._mediaSent = st;
  }

  /** `room-joined` participants' `mediaState` (each one known). */
  _rememberMedia(participants) {
    for (const p of participants) {
      if (p.mediaState && p.socketId !== this.socketId) this.remoteMedia.set(p.socketId, { ...p.mediaState });
    }
  }

  /** `media-state {from, audio, video, screen}`: emits `media-state` with the participant. */
  _onRemoteMedia(data) {
    const st = { audio: !!data.audio, video: !!data.video, screen: !!data.screen };
    this.remoteMedia.set(data.from, st);
    const participant = this.participants.find((p) => p.socketId === data.from) || null;
    if (participant) participant.mediaState = st;
    this._emit('media-state', { from: data.from, ...st, participant });
  }

  // ---------------------------------------------------------------- media controls

  /** What to send: the microphone, the camera (or the screen while sharing), their stream. */
  _localTracks() {
    const s = this.localStream;
    const audio = s ? s.getAudioTracks()[0] || null : null;
    const video = this._videoOverride || (s ? s.getVideoTracks()[0] || null : null);
    return { audio, video, stream: s || new MediaStream() };
  }

  /** Replaces the outgoing track of `kind` (`audio` or `video`) on every peer (null: send
   *  nothing). Adds a sender (renegotiating) where there was none. */
  replaceTrack(kind, track) {
    return this.mesh.replaceTrack(kind, track);
  }

  /** Mutes or unmutes the microphone (the track stays; it sends silence); tells the others.
   *  Answers false when there is no microphone. */
  setAudioEnabled(on) {
    const { audio } = this._localTracks();
    if (audio) audio.enabled = on;
    this._syncMediaState();
    return !!audio;
  }

  /** Sets the camera track used when no screen is shared (null: camera off); tells the
   *  others. */
  async setCameraTrack(track) {
    const s = this.localStream || (this.localStream = new MediaStream());
    for (const t of s.getVideoTracks()) s.removeTrack(t);
    if (track) s.addTrack(track);
    if (!this._videoOverride) await this.replaceTrack('video', track);
    this._syncMediaState();
  }

  /** Sends `track` (a screen) instead of the camera until `stopScreenShare`; tells the
   *  others. */
  async startScreenShare(track) {
    this._videoOverride = track;
    await this.replaceTrack('video', track);
    track.addEventListener('ended', () => {
      if (this._videoOverride === track) this.stopScreenShare();
    });
    this._syncMediaState();
  }

  /** Back to the camera (emits `screen-share-ended`); tells the others. */
  async stopScreenShare() {
    const t = this._videoOverride;
    this._videoOverride = null;
    if (t) t.stop();
    const s = this.localStream;
    await this.replaceTrack('video', s ? s.getVideoTracks()[0] || null : null);
    this._syncMediaState();
    this._emit('screen-share-ended', {});
  }
}
