// Unit checks of the client library's resume (docs/protocol.md, "Resume"), in Node: a fake
// WebSocket class stands for the browser's, a fake RTCPeerConnection for the peer
// connections, and a fake clock runs the library's timers (reconnect backoff, acks, join
// retries) on demand, so "nothing more happens" is checked by running every pending timer
// rather than by waiting. Imported by unit.mjs; `resumeChecks(check)` records failures.
// The fakes are shared with unit-call.mjs (the waiting room, chat and media state).
import { SignalgridClient } from '../../web/signalgrid-client.js';

/** A WebSocket the test drives: open(), frame(), drop(code). */
export class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  constructor(url) {
    this.url = new URL(url);
    this.readyState = FakeSocket.CONNECTING;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }
  send(f) { this.sent.push(JSON.parse(f)); }
  close(code = 1005) { this.closedWith = code; this.drop(code); }
  open() { this.readyState = FakeSocket.OPEN; if (this.onopen) this.onopen(); }
  frame(event, data, seq) {
    this.onmessage({ data: JSON.stringify(seq == null ? { event, data } : { event, data, seq }) });
  }
  drop(code = 1006) {
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    if (this.onclose) this.onclose({ code, reason: '' });
  }
  events() { return this.sent.map((f) => f.event); }
}
FakeSocket.all = [];

export class FakePC {
  constructor() {
    this.signalingState = 'stable';
    this.iceConnectionState = 'new';
    this.connectionState = 'new';
    this.restarts = 0;
    this.rollbacks = 0;
    this.closed = false;
    this.transceivers = [];
  }
  restartIce() { this.restarts += 1; }
  close() { this.closed = true; this.signalingState = 'closed'; }
  getTransceivers() { return this.transceivers; }
  addTransceiver(kind, o) { this.transceivers.push({ receiver: { track: { kind } }, sender: { track: null }, direction: o.direction }); }
  addTrack() {}
  async setLocalDescription(d) {
    if (d && d.type === 'rollback') { this.rollbacks += 1; this.signalingState = 'stable'; }
  }
}
class FakeStream { getTracks() { return []; } addTrack() {} }

/** Runs `fn(runTimers)` with fake timers, WebSocket, RTCPeerConnection and MediaStream. */
export async function withFakes(fn) {
  const saved = {
    setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout, WebSocket: globalThis.WebSocket,
    RTCPeerConnection: globalThis.RTCPeerConnection, MediaStream: globalThis.MediaStream,
  };
  // A virtual clock: timers fire only when the test advances it past their time.
  const pending = new Map();
  let nextId = 1;
  let now = 0;
  globalThis.setTimeout = (f, ms = 0) => { const id = nextId++; pending.set(id, { f, due: now + ms }); return id; };
  globalThis.clearTimeout = (id) => { pending.delete(id); };
  globalThis.WebSocket = FakeSocket;
  globalThis.RTCPeerConnection = FakePC;
  globalThis.MediaStream = FakeStream;
  FakeSocket.all = [];
  /** Advances the clock by `ms` (default: past every backoff of these checks, short of the
   *  socket opening bound), firing the timers due, earliest first. */
  const runTimers = (ms = 2500) => {
    const end = now + ms;
    for (let n = 0; n < 1000; n += 1) {
      const due = [...pending].filter(([, t]) => t.due <= end).sort((x, y) => x[1].due - y[1].due)[0];
      if (!due) break;
      pending.delete(due[0]);
      now = due[1].due;
      due[1].f();
    }
    now = end;
  };
  try {
    await fn(runTimers);
  } finally {
    Object.assign(globalThis, saved);
  }
}

const SELF = { socketId: 's1', userId: 'u1', userName: 'Alice', userRole: 'client' };
const OTHER = { socketId: 's2', userId: 'u2', userName: 'Bob', userRole: 'psychologist' };

/** A client whose first socket is open, connected (resume token r1) and in the room (seq 1). */
async function joinedClient(opts = {}) {
  const c = new SignalgridClient({ token: 'jwt', baseUrl: 'http://127.0.0.1:1', roomId: 'room-r',
    reconnect: { baseMs: 1000, maxMs: 1000 }, ...opts });
  c.iceServers = []; // no REST in these checks
  const seen = [];
  for (const t of ['reconnecting', 'resumed', 'rejoined', 'room-joined', 'user-joined', 'peer-reconnecting',
    'peer-reconnected', 'peer-left', 'ice-restart']) {
    c.addEventListener(t, (e) => seen.push([t, e.detail]));
  }
  c.addEventListener('sg-error', (e) => seen.push(['sg-error', { code: e.code, fatal: e.fatal }]));
  await c.start(null);
  const ws = FakeSocket.all.at(-1);
  ws.open();
  ws.frame('connected', { socketId: 's1', nodeId: 'n1', heartbeatMs: 25000, resumeToken: 'r1', resumeWindowMs: 30000 });
  ws.frame('room-joined', { roomId: 'room-r', participants: [SELF] }, 1);
  return { c, ws, seen, count: (t) => seen.filter(([x]) => x === t).length };
}

export async function resumeChecks(check) {
  // Frames are processed once per seq; a loss resumes (resume token, lastSeq) without
  // join-room; the replay skips what was processed; lost:false restarts no ICE.
  await withFakes(async (runTimers) => {
    const { c, ws, seen, count } = await joinedClient();
    const pc = c.mesh.peer('s2', OTHER, false).pc;
    ws.frame('user-joined', { ...OTHER, socketId: 's9' }, 2);
    ws.frame('user-joined', { ...OTHER, socketId: 's9' }, 2); // the same frame again
    check('resume: a seq processed once', count('user-joined') === 1 && c.lastSeq === 2);
    ws.drop(1006);
    check('resume: reconnecting (self) announced', count('reconnecting') === 1 && seen.find(([t]) => t === 'reconnecting')[1].resume === true
      && c.state === 'reconnecting');
    runTimers();
    const ws2 = FakeSocket.all.at(-1);
    check('resume: a new socket', FakeSocket.all.length === 2);
    const q = ws2.url.searchParams;
    check('resume: URL carries resume and lastSeq', q.get('resume') === 'r1' && q.get('lastSeq') === '2' && q.get('token') === 'jwt');
    // A relay made while away waits for the resume.
    pc.onicecandidate({ candidate: { toJSON: () => ({ candidate: 'c1' }) } });
    ws2.open();
    ws2.frame('connected', { socketId: 's1', nodeId: 'n2', heartbeatMs: 25000, resumeToken: 'r2', resumeWindowMs: 30000, resumed: true, lost: false });
    check('resume: resumed without join-room', !ws2.events().includes('join-room') && c.state === 'joined'
      && count('resumed') === 1 && count('rejoined') === 0 && c.socketId === 's1' && c.nodeId === 'n2');
    check('resume: the relay made while away is sent after the resume', ws2.events().join() === 'ice-candidate');
    check('resume: lost:false restarts no ICE', pc.restarts === 0 && !pc.closed && c.peers.get('s2').pc === pc);
    ws2.frame('user-joined', { ...OTHER, socketId: 's9' }, 2); // replayed, processed already
    ws2.frame('user-reconnecting', { socketId: 's9', userId: 'u2' }, 3);
    check('resume: replay skips the processed frame', count('user-joined') === 1 && count('peer-reconnecting') === 1 && c.isAway('s9'));
    ws2.frame('user-reconnected', { socketId: 's9', userId: 'u2' }, 4);
    ws2.frame('user-reconnecting', { socketId: 's9', userId: 'u2' }, 5);
    ws2.frame('user-left', { socketId: 's9', userId: 'u2', reason: 'timeout' }, 6);
    const left = seen.find(([t]) => t === 'peer-left');
    check('resume: peer-reconnected, peer-left with its reason', count('peer-reconnected') === 1 && left && left[1].reason === 'timeout'
      && !c.isAway('s9') && c.lastSeq === 6);
    // The next loss resumes with the newest token and seq.
    ws2.drop(1012);
    runTimers();
    const u3 = FakeSocket.all.at(-1).url.searchParams;
    check('resume: the newest token and seq', u3.get('resume') === 'r2' && u3.get('lastSeq') === '6');
    c.leave();
  });

  // Acks: one after `every` frames at once; otherwise one (not one per frame) after the idle time.
  await withFakes(async (runTimers) => {
    const { c, ws } = await joinedClient({ ack: { every: 3, idleMs: 2000 } });
    const acks = () => ws.sent.filter((f) => f.event === 'ack').map((f) => f.data.seq);
    check('ack: none before three frames', acks().length === 0);
    ws.frame('user-joined', OTHER, 2);
    ws.frame('user-reconnecting', { socketId: 's2', userId: 'u2' }, 3);
    check('ack: after three frames, at once', acks().join() === '3');
    ws.frame('user-reconnected', { socketId: 's2', userId: 'u2' }, 4);
    ws.frame('user-reconnecting', { socketId: 's2', userId: 'u2' }, 5);
    check('ack: not for every frame', acks().join() === '3');
    runTimers();
    check('ack: the idle ack covers both', acks().join() === '3,5');
    runTimers();
    check('ack: nothing new, no ack', acks().join() === '3,5');
    c.leave();
  });

  // A failed resume falls back to joining again: join-room once (RESUME_FAILED is not taken
  // for the join's answer), then new peer connections for the new seat.
  await withFakes(async (runTimers) => {
    const { c, ws, seen, count } = await joinedClient();
    const old = c.mesh.peer('s2', OTHER, false).pc;
    ws.drop(1006);
    runTimers();
    const ws2 = FakeSocket.all.at(-1);
    check('fallback: the attempt resumed', ws2.url.searchParams.get('resume') === 'r1');
    ws2.open();
    ws2.frame('connected', { socketId: 's3', nodeId: 'n2', heartbeatMs: 25000, resumeToken: 'r7', resumeWindowMs: 30000, resumed: false });
    ws2.frame('error', { code: 'RESUME_FAILED', message: 'x', details: { reason: 'expired' } }, 1);
    runTimers();
    check('fallback: join-room sent once', ws2.events().filter((e) => e === 'join-room').length === 1);
    check('fallback: RESUME_FAILED is not fatal', c.state !== 'failed' && seen.some(([t, d]) => t === 'sg-error' && d.code === 'RESUME_FAILED' && !d.fatal));
    ws2.frame('room-joined', { roomId: 'room-r', participants: [{ ...SELF, socketId: 's3' }, OTHER] }, 2);
    const fresh = c.peers.get('s2');
    check('fallback: rejoined with a new peer connection', count('rejoined') === 1 && old.closed && fresh && fresh.pc !== old
      && c.socketId === 's3' && c.lastSeq === 2);
    c.leave();
  });

  // The window passed: the next socket joins from scratch, no resume parameters.
  await withFakes(async (runTimers) => {
    const { c, ws } = await joinedClient();
    ws.drop(1006);
    c._resume.lostAt -= 31000; // the loss is older than the 30 s window
    runTimers();
    const ws2 = FakeSocket.all.at(-1);
    check('window passed: no resume parameters', FakeSocket.all.length === 2 && !ws2.url.searchParams.has('resume'));
    ws2.open();
    ws2.frame('connected', { socketId: 's4', nodeId: 'n2', heartbeatMs: 25000, resumeToken: 'r8', resumeWindowMs: 30000 });
    check('window passed: joins again', ws2.events().join() === 'join-room');
    c.leave();
  });

  // Final close codes (replaced 4001, kicked or room closed 4003) and a leave do not resume.
  for (const code of [4001, 4003]) {
    await withFakes(async (runTimers) => {
      const { c, ws } = await joinedClient();
      ws.drop(code);
      runTimers();
      check(`close ${code}: no reconnect`, FakeSocket.all.length === 1 && c.state === 'failed');
    });
  }
  await withFakes(async (runTimers) => {
    const { c, ws } = await joinedClient();
    c.leave();
    runTimers();
    check('leave: close 1000, no reconnect', ws.closedWith === 1000 && FakeSocket.all.length === 1 && ws.events().includes('leave-room'));
  });

  // lost:true restarts ICE on every existing peer connection (an unanswered offer is taken
  // back first); a peer connection whose ICE fails restarts too.
  await withFakes(async (runTimers) => {
    const { c, ws, count } = await joinedClient();
    const a = c.mesh.peer('s2', OTHER, false).pc;
    const b = c.mesh.peer('s5', { ...OTHER, socketId: 's5' }, false).pc;
    b.signalingState = 'have-local-offer';
    ws.drop(1006);
    runTimers();
    const ws2 = FakeSocket.all.at(-1);
    ws2.open();
    ws2.frame('connected', { socketId: 's1', nodeId: 'n3', heartbeatMs: 25000, resumeToken: 'r2', resumeWindowMs: 30000, resumed: true, lost: true });
    await new Promise((r) => { setImmediate(r); }); // after the rollback's promise chain
    check('lost: ICE restarted on the same peer connections', a.restarts === 1 && b.rollbacks === 1 && b.restarts === 1
      && c.peers.get('s2').pc === a && c.peers.get('s5').pc === b && count('ice-restart') === 2 && !ws2.events().includes('join-room'));
    a.iceConnectionState = 'failed';
    a.oniceconnectionstatechange();
    check('ice failed: restarted', a.restarts === 2);
    c.leave();
  });

  // Back online: the next attempt goes at once, not after the backoff.
  await withFakes(async () => {
    const win = new EventTarget();
    globalThis.addEventListener = win.addEventListener.bind(win);
    globalThis.removeEventListener = win.removeEventListener.bind(win);
    try {
      const { c, ws } = await joinedClient();
      ws.drop(1006);
      check('offline: waits for the backoff', FakeSocket.all.length === 1 && c.state === 'reconnecting');
      win.dispatchEvent(new Event('online'));
      check('online: reconnects at once, resuming', FakeSocket.all.length === 2 && FakeSocket.all[1].url.searchParams.get('resume') === 'r1');
      c.leave();
      win.dispatchEvent(new Event('online'));
      check('online after leave: nothing', FakeSocket.all.length === 2);
    } finally {
      delete globalThis.addEventListener;
      delete globalThis.removeEventListener;
    }
  });

  // A server without resume (no token): a loss joins again, as before.
  await withFakes(async (runTimers) => {
    const c = new SignalgridClient({ token: 'jwt', baseUrl: 'http://127.0.0.1:1', roomId: 'room-r', reconnect: { baseMs: 1, maxMs: 1 } });
    c.iceServers = [];
    await c.start(null);
    const ws = FakeSocket.all.at(-1);
    ws.open();
    ws.frame('connected', { socketId: 's1', nodeId: 'n1', heartbeatMs: 25000 });
    ws.frame('room-joined', { roomId: 'room-r', participants: [SELF] });
    ws.drop(1006);
    runTimers();
    const ws2 = FakeSocket.all.at(-1);
    ws2.open();
    ws2.frame('connected', { socketId: 's6', nodeId: 'n1', heartbeatMs: 25000 });
    check('no resume offered: rejoin', !ws2.url.searchParams.has('resume') && ws2.events().join() === 'join-room');
    c.leave();
  });
}
