// The call page (`/call/:sessionId`): the seed's VideoCallRoom on top of signalgrid-client.js.
//
// Token: `?token=<jwt>` (removed from the address bar at once), or, when absent, by
// postMessage: the page sends `{type: 'signalgrid:ready', sessionId}` to its parent (iframe)
// or opener (popup) and waits for `{type: 'signalgrid:token', token, userName?}`. With
// `?parentOrigin=https://platform.example` only that origin is listened to.
// Optional: `?name=<display name>`, `?signaling=<url>,<url>` (nodes to reconnect through).
// The page tells the platform `{type: 'signalgrid:call-ended', sessionId, duration}` and
// `{type: 'signalgrid:refused', sessionId, reason}` by postMessage too.

import { SignalgridClient, mediaErrorCode } from './signalgrid-client.js';
import { setupChat } from './call-chat.js';
import { clearError, showError } from './call-errors.js';
import { setupLobby } from './call-lobby.js';

const $ = (id) => document.getElementById(id);
const room = $('room');
const params = new URLSearchParams(location.search);
const sessionId = decodeURIComponent(location.pathname.replace(/\/+$/, '').split('/').pop() || '');
const parentOrigin = params.get('parentOrigin');
const platform = window.parent !== window ? window.parent : window.opener;

function setStatus(s, text) {
  $('status').dataset.status = s;
  $('status').textContent = text;
  room.dataset.state = s;
}

function tell(msg) {
  if (platform) platform.postMessage({ ...msg, sessionId }, parentOrigin || '*');
}

function tokenFromPlatform() {
  const q = params.get('token');
  if (q) {
    // Keep the token out of the history and of screenshots of the address bar.
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : ''));
    return Promise.resolve({ token: q, userName: params.get('name') });
  }
  return new Promise((resolve) => {
    setStatus('waiting', 'Waiting for sign-in…');
    window.addEventListener('message', function onMsg(e) {
      if (parentOrigin && e.origin !== parentOrigin) return;
      const d = e.data;
      if (!d || d.type !== 'signalgrid:token' || typeof d.token !== 'string') return;
      window.removeEventListener('message', onMsg);
      resolve({ token: d.token, userName: d.userName || params.get('name') });
    });
    tell({ type: 'signalgrid:ready' });
  });
}

// ------------------------------------------------------------------ the call

let client = null;
let localStream = null;
let cameraTrack = null;
let timerStart = null;
let timerHandle = null;
let statsHandle = null;
let ended = false;
/** The psychologist's name, from the session (the lobby says who will let the client in). */
let hostName = null;
let chat = null;

function startTimer() {
  if (timerStart) return;
  timerStart = Date.now();
  const tick = () => {
    const s = Math.floor((Date.now() - timerStart) / 1000);
    const hh = Math.floor(s / 3600);
    const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
    const ss = String(s % 60).padStart(2, '0');
    $('timer').textContent = hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
  };
  tick();
  timerHandle = setInterval(tick, 1000);
}

async function sampleQuality() {
  if (!client || client.peers.size === 0) {
    $('quality').dataset.quality = 'none';
    $('quality').textContent = '—';
    return;
  }
  const s = await client.sampleStats();
  if (!s.quality) return;
  const q = $('quality');
  q.dataset.quality = s.quality;
  q.textContent = { good: 'Good', fair: 'Fair', poor: 'Poor' }[s.quality];
  const kbps = s.bitrateIn == null ? '?' : Math.round(s.bitrateIn / 1000);
  const rtt = s.rtt == null ? '?' : Math.round(s.rtt);
  const loss = s.loss == null ? '?' : (s.loss * 100).toFixed(1);
  q.title = `Network quality: ${s.quality} — round trip ${rtt} ms, packet loss ${loss} %, receiving ${kbps} kbit/s`;
  q.dataset.rtt = rtt;
  q.dataset.loss = loss;
  q.dataset.kbps = kbps;
}

// ------------------------------------------------------------------ remote tiles

/** Remote participants whose signaling is away (they may resume): their tiles say so. */
const awayPeers = new Set();
/** socketId -> {audio, video, screen}: what each remote participant sends (`media-state`). */
const mediaStates = new Map();

/** The tile of a remote participant (made on first use): a video and a name label. */
function remoteTile(socketId, name) {
  let tile = document.querySelector(`.remote-tile[data-socket-id="${CSS.escape(socketId)}"]`);
  if (!tile) {
    tile = document.createElement('div');
    tile.className = 'remote-tile';
    tile.dataset.socketId = socketId;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    const label = document.createElement('span');
    label.className = 'label';
    tile.append(video, label);
    const badges = document.createElement('span');
    badges.className = 'media-badges';
    tile.append(badges);
    $('remotes').append(tile);
    setAway(socketId, awayPeers.has(socketId));
    setMedia(socketId, mediaStates.get(socketId));
    layoutRemotes();
  }
  if (name) tile.querySelector('.label').textContent = name;
  return tile;
}

/** Shows or clears the "Reconnecting…" badge of a remote participant's tile. */
function setAway(socketId, away) {
  if (away) awayPeers.add(socketId);
  else awayPeers.delete(socketId);
  const tile = document.querySelector(`.remote-tile[data-socket-id="${CSS.escape(socketId)}"]`);
  if (!tile) return;
  tile.dataset.away = String(away);
  let badge = tile.querySelector('.away-badge');
  if (away && !badge) {
    badge = document.createElement('span');
    badge.className = 'away-badge';
    badge.setAttribute('role', 'status');
    badge.textContent = 'Reconnecting…';
    tile.append(badge);
  } else if (!away && badge) {
    badge.remove();
  }
}

/** The "Muted" and "Camera off" badges of a remote participant's tile (`media-state`). */
function setMedia(socketId, st) {
  if (st) mediaStates.set(socketId, st);
  const tile = document.querySelector(`.remote-tile[data-socket-id="${CSS.escape(socketId)}"]`);
  if (!tile || !st) return;
  tile.dataset.audio = String(st.audio);
  tile.dataset.video = String(st.video || st.screen);
  const name = tile.querySelector('.label').textContent || 'The other participant';
  const badges = tile.querySelector('.media-badges');
  badges.replaceChildren();
  for (const [on, cls, text, label] of [[st.audio, 'badge-muted', 'Muted', `${name} is muted`],
    [st.video || st.screen, 'badge-camera-off', 'Camera off', `${name}'s camera is off`]]) {
    if (on) continue;
    const b = document.createElement('span');
    b.className = `media-badge ${cls}`;
    b.textContent = text;
    b.title = label;
    badges.append(b);
  }
}

/** The page's status from its peer connections (after a join or a resume). */
function statusFromPeers() {
  const pcs = [...client.peers.values()].map((p) => p.pc.connectionState);
  if (pcs.includes('connected')) setStatus('connected', 'Connected');
  else if (pcs.length) setStatus('connecting', 'Connecting…');
  else setStatus('waiting', 'Waiting for the other participant…');
}

function removeTile(socketId) {
  awayPeers.delete(socketId);
  mediaStates.delete(socketId);
  const tile = document.querySelector(`.remote-tile[data-socket-id="${CSS.escape(socketId)}"]`);
  if (!tile) return;
  tile.querySelector('video').srcObject = null;
  tile.remove();
  layoutRemotes();
}

/** A grid as square as possible; the header names who is in the call. */
function layoutRemotes() {
  const tiles = [...document.querySelectorAll('.remote-tile')];
  const r = $('remotes');
  r.dataset.count = String(tiles.length);
  r.style.setProperty('--cols', String(Math.max(1, Math.ceil(Math.sqrt(tiles.length)))));
  $('remote-placeholder').hidden = tiles.length > 0;
  const names = tiles.map((t) => t.querySelector('.label').textContent).filter(Boolean);
  if (names.length) $('peer-name').textContent = `with ${names.join(', ')}`;
}

function enableControls(on) {
  for (const id of ['btn-audio', 'btn-video', 'btn-screen', 'btn-end']) $(id).disabled = !on;
  // Without a microphone there is nothing to mute.
  if (on && $('btn-audio').dataset.missing === 'true') $('btn-audio').disabled = true;
}

/** The media buttons say what the user can do with the devices the page really got. */
function reflectDevices() {
  const v = $('btn-video');
  v.dataset.on = String(!!cameraTrack);
  v.textContent = cameraTrack ? 'Camera off' : 'Camera on';
  const a = $('btn-audio');
  const mic = !!(localStream && localStream.getAudioTracks().length);
  a.dataset.missing = String(!mic);
  a.dataset.on = String(mic);
  a.textContent = mic ? 'Mute' : 'No microphone';
}

function finish(text, duration) {
  if (ended) return;
  ended = true;
  clearInterval(timerHandle);
  clearInterval(statsHandle);
  enableControls(false);
  chat.enable(false);
  $('admit-panel').hidden = true;
  setStatus('ended', text);
  for (const t of document.querySelectorAll('.remote-tile')) removeTile(t.dataset.socketId);
  $('remote-placeholder').hidden = false;
  $('remote-placeholder').textContent = duration != null ? `The call has ended (${duration} min).` : 'The call has ended.';
  if (localStream) for (const t of localStream.getTracks()) t.stop();
  tell({ type: 'signalgrid:call-ended', duration: duration ?? null });
}

async function getCamera() {
  const s = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } } });
  return s.getVideoTracks()[0];
}

async function main() {
  setStatus('starting', 'Checking your session…');
  const { token, userName } = await tokenFromPlatform();
  client = new SignalgridClient({
    token,
    sessionId,
    userName: userName || undefined,
    signalingUrls: [location.origin, ...(params.get('signaling') || '').split(',').filter(Boolean)],
  });
  window.signalgridCall = { client }; // for debugging in the console
  client.addEventListener('screen-share-ended', onShareEnded);
  chat = setupChat(client);
  setupLobby(client, { setStatus, tell, hostName: () => hostName });

  // 1. May this user join now? Nothing else (no camera, no socket) before a yes.
  let verdict;
  try {
    verdict = await client.canJoin();
  } catch (e) {
    setStatus('refused', 'Cannot join');
    showError(e.code || 'NETWORK_ERROR', e.details, e.message, e.requestId);
    tell({ type: 'signalgrid:refused', reason: e.code || 'NETWORK_ERROR' });
    return;
  }
  if (!verdict.canJoin) {
    setStatus('refused', 'Cannot join');
    showError(verdict.reason, verdict, '');
    tell({ type: 'signalgrid:refused', reason: verdict.reason });
    return;
  }

  // 2. The room and the other participant's name.
  try {
    const r = await client.generateRoom();
    const me = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    const myId = me.sub || (me.user && me.user.id);
    const other = r.participants && (r.participants.client?.id === myId ? r.participants.psychologist : r.participants.client);
    if (other && other.name) $('peer-name').textContent = `with ${other.name}`;
    hostName = (r.participants && r.participants.psychologist && r.participants.psychologist.name) || null;
  } catch (e) {
    if (e.code) {
      setStatus('refused', 'Cannot join');
      showError(e.code, e.details, e.message, e.requestId);
      return;
    }
  }

  // 3. Camera and microphone (the call goes on without them: receive only).
  setStatus('connecting', 'Starting camera…');
  try {
    localStream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: 1280 }, height: { ideal: 720 } },
    });
  } catch (e) {
    showError(mediaErrorCode(e), { name: e.name });
    try {
      localStream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (_) {
      localStream = null;
    }
  }
  cameraTrack = localStream ? localStream.getVideoTracks()[0] || null : null;
  $('local-video').srcObject = localStream;
  reflectDevices();

  // 4. Signaling and peers.
  client.addEventListener('state', (e) => {
    const s = e.detail.state;
    if (s === 'connecting') setStatus('connecting', 'Connecting…');
    if (s === 'reconnecting') setStatus('reconnecting', 'Reconnecting…');
    if (s === 'joined') {
      clearError('NETWORK_ERROR');
      clearError('NODE_DRAINING');
      // After a resume the peer connections are the same ones, possibly still connected.
      statusFromPeers();
      enableControls(true);
      chat.enable(true);
    }
    if (s === 'waiting') {
      // In the lobby: the devices can be tried out; nothing is sent to anyone yet.
      setStatus('lobby', 'Waiting to be let in');
      enableControls(false);
      for (const id of ['btn-audio', 'btn-video']) $(id).disabled = false;
      if ($('btn-audio').dataset.missing === 'true') $('btn-audio').disabled = true;
    }
    if (s === 'denied') enableControls(false);
    if (s === 'failed') {
      setStatus('error', 'Disconnected');
      enableControls(false);
      chat.enable(false);
    }
  });
  client.addEventListener('sg-error', (e) => {
    // A refused resume is not the user's concern: the library joins the room again.
    if (e.code === 'RESUME_FAILED') return;
    // Shown where they belong: the lobby (a denial), the admit panel, the chat panel.
    if (e.code === 'ADMISSION_DENIED' || e.details.socketId || e.details.event === 'chat-message') return;
    showError(e.code, e.details, e.message, e.requestId);
  });
  // Another participant's signaling dropped: their tile says so until they are back or gone.
  client.addEventListener('peer-reconnecting', (e) => setAway(e.detail.socketId, true));
  client.addEventListener('peer-reconnected', (e) => setAway(e.detail.socketId, false));
  client.addEventListener('remote-stream', (e) => {
    const name = e.detail.participant && e.detail.participant.userName;
    const v = remoteTile(e.detail.socketId, name).querySelector('video');
    if (v.srcObject !== e.detail.stream) v.srcObject = e.detail.stream;
    layoutRemotes();
  });
  client.addEventListener('peer-closed', (e) => removeTile(e.detail.socketId));
  client.addEventListener('peer-state', (e) => {
    const s = e.detail.state;
    // While our own signaling resumes, the status says so whatever the media does.
    if (client.state === 'reconnecting') {
      if (s === 'connected') startTimer();
      return;
    }
    if (s === 'connected') {
      clearError('WEBRTC_FAILED');
      setStatus('connected', 'Connected');
      startTimer();
    } else if (s === 'disconnected') {
      setStatus('reconnecting', 'Connection unstable…');
    } else if (s === 'failed') {
      setStatus('error', 'Video connection failed');
    }
  });
  client.addEventListener('peer-left', (e) => {
    removeTile(e.detail.socketId);
    if (client.peers.size === 0 && !ended) {
      $('remote-placeholder').hidden = false;
      $('remote-placeholder').textContent = e.detail.reason === 'timeout'
        ? 'The other participant\'s connection was lost. Waiting for them to come back…'
        : 'The other participant left. Waiting for them to come back…';
      setStatus('waiting', 'Waiting for the other participant…');
    }
  });
  client.addEventListener('call-ended', (e) => finish('Call ended', e.detail.duration));
  // What the others send: muted and camera-off badges on their tiles.
  client.addEventListener('media-state', (e) => setMedia(e.detail.from, e.detail));
  for (const t of ['room-joined', 'rejoined']) {
    client.addEventListener(t, (e) => {
      for (const p of e.detail.participants || []) if (p.mediaState) setMedia(p.socketId, p.mediaState);
    });
  }
  client.addEventListener('session-ending', (e) => {
    const m = e.detail.minutesLeft;
    const n = $('notice');
    n.hidden = false;
    n.textContent = `The session time ends in ${m} minute${m === 1 ? '' : 's'}. The call will then close by itself.`;
  });

  try {
    await client.start(localStream);
  } catch (e) {
    setStatus('refused', 'Cannot join');
    return;
  }
  statsHandle = setInterval(() => sampleQuality().catch(() => {}), 2000);
}

// ------------------------------------------------------------------ controls

$('btn-audio').addEventListener('click', () => {
  const b = $('btn-audio');
  const on = b.dataset.on !== 'true';
  if (!client.setAudioEnabled(on)) return;
  b.dataset.on = String(on);
  b.textContent = on ? 'Mute' : 'Unmute';
});

$('btn-video').addEventListener('click', async () => {
  const b = $('btn-video');
  b.disabled = true;
  try {
    if (b.dataset.on === 'true') {
      // Camera off: stop the device (its light goes off) and send no video.
      if (cameraTrack) cameraTrack.stop();
      cameraTrack = null;
      await client.setCameraTrack(null);
      b.dataset.on = 'false';
      b.textContent = 'Camera on';
    } else {
      cameraTrack = await getCamera();
      await client.setCameraTrack(cameraTrack);
      clearError('MEDIA_PERMISSION_DENIED');
      clearError('MEDIA_UNAVAILABLE');
      b.dataset.on = 'true';
      b.textContent = 'Camera off';
    }
    if (room.dataset.sharing !== 'true') $('local-video').srcObject = new MediaStream(client.localStream.getTracks());
  } catch (e) {
    showError(mediaErrorCode(e), { name: e.name });
  } finally {
    b.disabled = false;
  }
});

$('btn-screen').addEventListener('click', async () => {
  const b = $('btn-screen');
  if (b.dataset.on === 'true') {
    await client.stopScreenShare();
    return;
  }
  let screen;
  try {
    screen = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (e) {
    // Cancelling the picker is not an error worth a banner.
    if (e.name !== 'NotAllowedError' && e.name !== 'AbortError') showError('SCREEN_SHARE_FAILED', { name: e.name });
    return;
  }
  const track = screen.getVideoTracks()[0];
  await client.startScreenShare(track);
  clearError('SCREEN_SHARE_FAILED');
  b.dataset.on = 'true';
  b.textContent = 'Stop sharing';
  room.dataset.sharing = 'true';
  $('local-video').srcObject = new MediaStream([track]);
});

function onShareEnded() {
  const b = $('btn-screen');
  b.dataset.on = 'false';
  b.textContent = 'Share screen';
  room.dataset.sharing = 'false';
  $('local-video').srcObject = client.localStream ? new MediaStream(client.localStream.getTracks()) : null;
}

$('btn-end').addEventListener('click', async () => {
  $('btn-end').disabled = true;
  await client.endCall();
});

main().catch((e) => {
  setStatus('error', 'Error');
  showError('INTERNAL', {}, String(e));
});
