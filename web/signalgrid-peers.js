// signalgrid-peers.js: the mesh of RTCPeerConnections of a call, one per remote participant.
// Makes them (the newcomer offers), runs "perfect negotiation" on each (one polite side per
// pair, decided by comparing socket ids), keeps ICE candidates that arrive before their
// offer, restarts ICE (when ICE fails, or when a resumed signaling socket may have lost
// frames), and closes them. Signaling goes through the SignalgridClient that owns the mesh
// (its socket, ICE servers, participants, local tracks and events). Part of the client
// library; not used on its own.

export class PeerMesh {
  /** @param {import('./signalgrid-client.js').SignalgridClient} client the owner */
  constructor(client) {
    this.client = client;
    /** socketId -> {pc, info, polite, makingOffer, ignoreOffer, pending, stream} */
    this.peers = new Map();
    /** ICE candidates that arrived before their peer's offer. */
    this.early = new Map();
  }

  /** The peer connection to `socketId`; `offerer`: we are the newcomer and offer. */
  peer(socketId, info, offerer) {
    let p = this.peers.get(socketId);
    if (p) return p;
    // Perfect negotiation needs exactly one polite side per pair: both sides compare the
    // same two socket ids. (Who offers first is decided by who joined last, not by this.)
    const polite = String(this.client.socketId) < String(socketId);
    const pc = new RTCPeerConnection({ iceServers: this.client.iceServers || [] });
    const stream = new MediaStream();
    p = {
      pc, stream, polite, makingOffer: false, ignoreOffer: false, pending: this.early.get(socketId) || [], remoteSet: false,
      info: info || this.client.participants.find((x) => x.socketId === socketId) || { socketId },
    };
    this.peers.set(socketId, p);
    this.early.delete(socketId);
    pc.onicecandidate = (e) => {
      this.client._send('ice-candidate', { candidate: e.candidate ? e.candidate.toJSON() : null, to: socketId });
    };
    pc.ontrack = (e) => {
      if (!p.stream.getTracks().includes(e.track)) p.stream.addTrack(e.track);
      this.client._emit('remote-stream', { socketId, participant: p.info, stream: p.stream, track: e.track });
    };
    pc.onnegotiationneeded = async () => {
      try {
        p.makingOffer = true;
        await pc.setLocalDescription();
        this.client._send('offer', { offer: pc.localDescription.toJSON(), to: socketId });
      } catch (e) {
        this.client._emitError('WEBRTC_FAILED', 'The call could not be set up.', { cause: String(e) }, { source: 'webrtc' });
      } finally {
        p.makingOffer = false;
      }
    };
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      this.client._emit('peer-state', { socketId, participant: p.info, state: s });
      if (s === 'failed') {
        this.client._emitError('WEBRTC_FAILED', 'The media connection failed. Trying again…', { socketId }, { source: 'webrtc' });
      }
    };
    // ICE failed (a network change on either side): restart it on this same connection.
    // Both sides may do so; perfect negotiation settles the two offers.
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === 'failed') this.restartIce('ice-failed', [socketId]);
    };
    this.client._emit('peer-created', { socketId, participant: p.info });
    if (offerer) {
      // The offering side adds its tracks now; negotiationneeded sends the offer. Without
      // local media it still asks to receive audio and video.
      this.attachLocal(p);
      const kinds = new Set(pc.getTransceivers().map((t) => t.receiver.track.kind));
      for (const k of ['audio', 'video']) if (!kinds.has(k)) pc.addTransceiver(k, { direction: 'recvonly' });
    }
    return p;
  }

  attachLocal(p) {
    const { audio, video, stream } = this.client._localTracks();
    for (const t of [audio, video]) if (t) p.pc.addTrack(t, stream);
  }

  async onOffer(from, offer) {
    let p = this.peers.get(from);
    const fresh = !p;
    if (!p) p = this.peer(from, null, false);
    const pc = p.pc;
    try {
      const collision = p.makingOffer || pc.signalingState !== 'stable';
      p.ignoreOffer = !p.polite && collision;
      if (p.ignoreOffer) return;
      await pc.setRemoteDescription(offer);
      p.remoteSet = true;
      if (fresh) this.attachLocal(p);
      await pc.setLocalDescription();
      this.client._send('answer', { answer: pc.localDescription.toJSON(), to: from });
      await this.flushCandidates(p);
    } catch (e) {
      this.client._emitError('WEBRTC_FAILED', 'The call could not be set up.', { cause: String(e) }, { source: 'webrtc' });
    }
  }

  async onAnswer(from, answer) {
    const p = this.peers.get(from);
    // No offer of ours is waiting (taken back for an ICE restart): a stale answer.
    if (!p || p.pc.signalingState !== 'have-local-offer') return;
    try {
      await p.pc.setRemoteDescription(answer);
      p.remoteSet = true;
      await this.flushCandidates(p);
    } catch (e) {
      this.client._emitError('WEBRTC_FAILED', 'The call could not be set up.', { cause: String(e) }, { source: 'webrtc' });
    }
  }

  async onCandidate(from, candidate) {
    const p = this.peers.get(from);
    if (!p) {
      // Before the offer that makes the peer connection: keep it for then.
      if (!this.early.has(from)) this.early.set(from, []);
      this.early.get(from).push(candidate);
      return;
    }
    if (!p.pc.remoteDescription) {
      p.pending.push(candidate);
      return;
    }
    try {
      await p.pc.addIceCandidate(candidate || undefined);
    } catch (e) {
      if (!p.ignoreOffer) {
        this.client._emitError('WEBRTC_FAILED', 'A network path could not be used.', { cause: String(e) }, { source: 'webrtc' });
      }
    }
  }

  async flushCandidates(p) {
    const list = p.pending.splice(0);
    for (const c of list) {
      try {
        await p.pc.addIceCandidate(c || undefined);
      } catch (_) {
        /* a stale candidate */
      }
    }
  }

  /**
   * Restarts ICE on the peer connections of `socketIds` (default: all): `restartIce()`, whose
   * `negotiationneeded` sends a new offer as any renegotiation does. An offer of ours still
   * waiting for its answer (it may have been lost) is taken back first. Emits
   * `ice-restart {socketId, participant, reason}` for each.
   */
  restartIce(reason, socketIds = [...this.peers.keys()]) {
    for (const id of socketIds) {
      const p = this.peers.get(id);
      if (!p || p.pc.signalingState === 'closed') continue;
      const pc = p.pc;
      this.client._emit('ice-restart', { socketId: id, participant: p.info, reason });
      if (pc.signalingState === 'have-local-offer') {
        pc.setLocalDescription({ type: 'rollback' }).catch(() => {}).then(() => pc.restartIce());
      } else {
        pc.restartIce();
      }
    }
  }

  /** Replaces the outgoing track of `kind` on every peer (null: send nothing). Adds a
   *  sender (renegotiating) where there was none. */
  async replaceTrack(kind, track) {
    const { stream } = this.client._localTracks();
    for (const p of this.peers.values()) {
      const trs = p.pc.getTransceivers().filter((t) => !t.stopped && t.receiver.track.kind === kind);
      const sending = trs.find((t) => t.sender.track || t.direction === 'sendrecv' || t.direction === 'sendonly');
      if (sending) {
        await sending.sender.replaceTrack(track);
        continue;
      }
      if (!track) continue;
      // No sender of that kind yet: use the receive-only transceiver or add a track;
      // either way negotiationneeded renegotiates.
      const tr = trs[0];
      if (tr) {
        await tr.sender.replaceTrack(track);
        if (tr.sender.setStreams) tr.sender.setStreams(stream);
        tr.direction = 'sendrecv';
      } else {
        p.pc.addTrack(track, stream);
      }
    }
  }

  close(socketId) {
    const p = this.peers.get(socketId);
    if (!p) return;
    this.peers.delete(socketId);
    try {
      p.pc.close();
    } catch (_) {
      /* already closed */
    }
    this.client._emit('peer-closed', { socketId, participant: p.info });
  }

  closeAll() {
    this.early.clear();
    for (const id of [...this.peers.keys()]) this.close(id);
  }
}
