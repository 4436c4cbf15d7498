// Unit checks of the client library's waiting room, chat and media state (PROTOCOL.md
// sections 8 and 10), in Node with the fakes of unit-resume.mjs (a fake WebSocket the test
// drives, a fake RTCPeerConnection, a fake clock). Imported by unit.mjs;
// `callChecks(check)` records failures.
import { SignalgridClient } from '../../web/signalgrid-client.js';
import { FakePC, FakeSocket, withFakes } from './unit-resume.mjs';

const SELF = { socketId: 's1', userId: 'client-1', userName: 'Alice', userRole: 'client' };
const HOST = { socketId: 'h1', userId: 'psy-1', userName: 'Dr. Bob', userRole: 'psychologist' };

/** A track and a stream of the shape the library reads. */
const track = (kind) => ({ kind, enabled: true, readyState: 'live', stop() { this.readyState = 'ended'; }, addEventListener() {} });
function stream(tracks) {
  return {
    tracks,
    getTracks() { return this.tracks; },
    getAudioTracks() { return this.tracks.filter((t) => t.kind === 'audio'); },
    getVideoTracks() { return this.tracks.filter((t) => t.kind === 'video'); },
    addTrack(t) { this.tracks.push(t); },
    removeTrack(t) { this.tracks = this.tracks.filter((x) => x !== t); },
  };
}

/** A started client whose socket is open and connected (resume token r1); counts the
 *  RTCPeerConnections it makes. */
async function connectedClient(local = null) {
  let made = 0;
  globalThis.RTCPeerConnection = class extends FakePC { constructor(...a) { super(...a); made += 1; } };
  const c = new SignalgridClient({ token: 'jwt', baseUrl: 'http://127.0.0.1:1', roomId: 'room-w', reconnect: { baseMs: 1000, maxMs: 1000 } });
  c.iceServers = [];
  const seen = [];
  for (const t of ['waiting', 'admitted', 'room-joined', 'denied', 'participant-waiting', 'waiting-list', 'settle-failed',
    'user-left', 'peer-left', 'chat-message', 'chat-sent', 'media-state', 'session-ending']) {
    c.addEventListener(t, (e) => seen.push([t, e.detail]));
  }
  c.addEventListener('sg-error', (e) => seen.push(['sg-error', { code: e.code, fatal: e.fatal }]));
  await c.start(local);
  const ws = FakeSocket.all.at(-1);
  ws.open();
  ws.frame('connected', { socketId: 's1', nodeId: 'n1', heartbeatMs: 25000, resumeToken: 'r1', resumeWindowMs: 30000 });
  const sent = (sock, ev) => sock.sent.filter((f) => f.event === ev);
  return { c, ws, seen, made: () => made, count: (t) => seen.filter(([x]) => x === t).length,
    last: (t) => seen.filter(([x]) => x === t).at(-1)?.[1], sent };
}

export async function callChecks(check) {
  // A waiting client: no retry of the join, no peer connection, no chat; its waiting seat
  // resumes without joining again; the admission is `admitted`, then it offers as usual.
  await withFakes(async (runTimers) => {
    const { c, ws, made, count, last, sent } = await connectedClient(stream([track('audio'), track('video')]));
    check('waiting: join-room sent', sent(ws, 'join-room').length === 1);
    ws.frame('waiting', { roomId: 'room-w' }, 1);
    runTimers();
    check('waiting: event and state', count('waiting') === 1 && last('waiting').roomId === 'room-w' && c.state === 'waiting'
      && c.lobby.isWaiting);
    check('waiting: no join retry', sent(ws, 'join-room').length === 1);
    check('waiting: no RTCPeerConnection', made() === 0 && c.peers.size === 0);
    check('waiting: media-state sent once', sent(ws, 'media-state').length === 1);
    const chat = c.sendChat('let me in').then(() => 'sent', (e) => e.code);
    ws.frame('error', { code: 'FORBIDDEN', message: 'x', details: { event: 'chat-message' } }, 2);
    check('waiting: a refused chat rejects its promise', (await chat) === 'FORBIDDEN');
    check('waiting: the chat refusal is not fatal', c.state === 'waiting' && last('sg-error').fatal === false);
    // The socket drops: the waiting seat resumes, still waiting, without join-room.
    ws.drop(1006);
    runTimers();
    const ws2 = FakeSocket.all.at(-1);
    ws2.open();
    ws2.frame('connected', { socketId: 's1', nodeId: 'n2', heartbeatMs: 25000, resumeToken: 'r2', resumeWindowMs: 30000, resumed: true, lost: false });
    check('waiting resumed: no join-room, still waiting', sent(ws2, 'join-room').length === 0 && c.state === 'waiting' && made() === 0);
    ws2.frame('room-joined', { roomId: 'room-w', participants: [
      { ...HOST, mediaState: { audio: false, video: true, screen: false } }, SELF] }, 3);
    check('admitted: event, then room-joined', count('admitted') === 1 && count('room-joined') === 1 && c.state === 'joined'
      && !c.lobby.isWaiting);
    check('admitted: one peer connection, to the host', made() === 1 && c.peers.has('h1'));
    check('admitted: the host\'s media state remembered', c.remoteMedia.get('h1')?.audio === false && c.remoteMedia.get('h1')?.video === true);
    const ms = sent(ws2, 'media-state');
    check('admitted: media-state sent once after joining', ms.length === 1
      && JSON.stringify(ms[0].data) === JSON.stringify({ audio: true, video: true, screen: false }));
    c.leave();
  });

  // Denied: `denied`, no peer connection, not fatal; `askAgain` waits again.
  await withFakes(async (runTimers) => {
    const { c, ws, made, count, last, sent } = await connectedClient();
    ws.frame('waiting', { roomId: 'room-w' }, 1);
    ws.frame('error', { code: 'ADMISSION_DENIED', message: 'x', details: { roomId: 'room-w' } }, 2);
    runTimers();
    check('denied: event and state', count('denied') === 1 && last('denied').roomId === 'room-w' && c.state === 'denied');
    check('denied: not fatal, no retry, no peer connection', last('sg-error').fatal === false && sent(ws, 'join-room').length === 1
      && made() === 0 && !c.lobby.isWaiting);
    check('denied: askAgain joins again', c.askAgain() === true && sent(ws, 'join-room').length === 2);
    ws.frame('waiting', { roomId: 'room-w' }, 3);
    check('denied: waits again', c.state === 'waiting' && count('waiting') === 2);
    check('askAgain only after a denial', c.askAgain() === false);
    c.leave();
  });

  // A host: the waiting list from room-joined and participant-waiting; admit and deny go out;
  // ROOM_FULL answering an admit is not fatal; a waiting client's user-left is no peer-left.
  await withFakes(async () => {
    const { c, ws, count, last, seen, sent } = await connectedClient();
    const W1 = { socketId: 'w1', userId: 'client-1', userName: 'Alice' };
    const W2 = { socketId: 'w2', userId: 'client-2', userName: 'Carol' };
    ws.frame('room-joined', { roomId: 'room-w', participants: [{ ...SELF, socketId: 's1' }], waiting: [W1] }, 1);
    check('host: the waiting list from room-joined', count('participant-waiting') === 1 && c.waiting.length === 1
      && c.waiting[0].socketId === 'w1' && count('admitted') === 0);
    ws.frame('participant-waiting', W2, 2);
    check('host: participant-waiting adds', last('participant-waiting').userName === 'Carol'
      && JSON.stringify(last('waiting-list').waiting.map((w) => w.socketId)) === '["w1","w2"]');
    check('host: admit sent', c.admit('w1') === true && JSON.stringify(sent(ws, 'admit').map((f) => f.data)) === '[{"socketId":"w1"}]');
    ws.frame('error', { code: 'ROOM_FULL', message: 'x', details: { socketId: 'w1' } }, 3);
    check('host: ROOM_FULL to an admit is not fatal', c.state === 'joined' && last('sg-error').code === 'ROOM_FULL'
      && last('sg-error').fatal === false && last('settle-failed').code === 'ROOM_FULL' && c.waiting.length === 2);
    check('host: deny sent', c.deny('w2') === true && sent(ws, 'deny')[0].data.socketId === 'w2');
    ws.frame('user-left', { socketId: 'w2', userId: 'client-2', reason: 'denied' }, 4);
    check('host: a denied client leaves the list, no peer-left', c.waiting.length === 1 && count('peer-left') === 0
      && count('user-left') === 1);
    c.admit('w1');
    ws.frame('user-joined', { ...W1, userRole: 'client' }, 5);
    check('host: an admitted client leaves the list', c.waiting.length === 0 && last('waiting-list').waiting.length === 0);
    check('host: no error was fatal', !seen.some(([t, d]) => t === 'sg-error' && d.fatal));
    c.leave();
  });

  // Chat: bounds checked before sending; answers settle the sends in order; incoming
  // messages carry their sender; `media-state` and `session-ending` become events.
  await withFakes(async () => {
    const { c, ws, count, last, sent } = await connectedClient();
    ws.frame('room-joined', { roomId: 'room-w', participants: [SELF, HOST] }, 1);
    const codeOf = (p) => p.then((r) => r, (e) => e.code);
    check('chat: empty is refused unsent', (await codeOf(c.sendChat(''))) === 'BAD_REQUEST');
    check('chat: 2001 code points are refused unsent', (await codeOf(c.sendChat('x'.repeat(2001)))) === 'BAD_REQUEST'
      && sent(ws, 'chat-message').length === 0);
    const a = codeOf(c.sendChat('😀'.repeat(2000))); // 2000 code points (4000 UTF-16 units)
    const b = codeOf(c.sendChat('second'));
    check('chat: sent in order', sent(ws, 'chat-message').map((f) => f.data.text.length).join() === '4000,6');
    ws.frame('chat-sent', { id: 'm1' }, 2);
    ws.frame('error', { code: 'RATE_LIMITED', message: 'x', details: { event: 'chat-message', retryAfterMs: 900 } }, 3);
    check('chat: the first resolves with its id', JSON.stringify(await a) === '{"id":"m1"}' && last('chat-sent').id === 'm1');
    check('chat: the second rejects RATE_LIMITED, not fatal', (await b) === 'RATE_LIMITED' && c.state === 'joined');
    ws.frame('chat-message', { id: 'm2', from: 'h1', userId: 'psy-1', userName: 'Dr. Bob', text: '<b>hi</b>', sentAt: '2026-01-01T00:00:00.000Z' }, 4);
    const m = last('chat-message');
    check('chat: incoming message with its sender', count('chat-message') === 1 && m.text === '<b>hi</b>' && m.participant?.userName === 'Dr. Bob');
    ws.frame('media-state', { from: 'h1', audio: false, video: true, screen: false }, 5);
    const st = last('media-state');
    check('media-state: event with the participant', st.from === 'h1' && st.audio === false && st.video === true
      && st.participant?.userId === 'psy-1' && c.remoteMedia.get('h1').audio === false);
    ws.frame('session-ending', { minutesLeft: 5 }, 6);
    check('session-ending: event', last('session-ending').minutesLeft === 5);
    const pending = codeOf(c.sendChat('unanswered'));
    c.leave();
    check('chat: a send unanswered at the end rejects', (await pending) === 'NETWORK_ERROR');
  });

  // Media toggles: media-state on every change (not when nothing changed), nothing before a join.
  await withFakes(async () => {
    const mic = track('audio');
    const cam = track('video');
    const { c, ws, sent } = await connectedClient(stream([mic, cam]));
    c.setAudioEnabled(false);
    check('media: nothing before joining', sent(ws, 'media-state').length === 0);
    ws.frame('room-joined', { roomId: 'room-w', participants: [SELF] }, 1);
    const states = () => sent(ws, 'media-state').map((f) => `${f.data.audio}/${f.data.video}/${f.data.screen}`);
    check('media: once after joining', states().join() === 'false/true/false');
    c.setAudioEnabled(true);
    c.setAudioEnabled(true);
    check('media: unmute sent once', states().join() === 'false/true/false,true/true/false');
    await c.setCameraTrack(null);
    await c.startScreenShare(track('video'));
    await c.stopScreenShare();
    check('media: camera off, share, stop', states().join()
      === 'false/true/false,true/true/false,true/false/false,true/false/true,true/false/false');
    c.leave();
  });
}
