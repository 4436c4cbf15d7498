// Unit checks of the client library's pure parts, in Node (no browser): backoff with jitter,
// the quality verdict, media error codes, the typed error event, and the resume of a dropped
// socket (unit-resume.mjs), the waiting room, chat and media state (unit-call.mjs). Run by
// tests/browser.rs; prints one JSON line.
import {
  backoffDelay, classifyQuality, mediaErrorCode, SignalgridErrorEvent, SignalgridClient, ERROR_CODES,
} from '../../web/signalgrid-client.js';
import { callChecks } from './unit-call.mjs';
import { resumeChecks } from './unit-resume.mjs';

const failures = [];
// A bounded wait for a condition (the library's timers are real).
async function until(cond, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('unit.mjs: condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
const check = (what, ok) => { if (!ok) failures.push(what); };

// Backoff: full jitter under min(cap, base * 2^n); grows until the cap.
for (let n = 0; n < 12; n += 1) {
  const ceiling = Math.min(15000, 500 * 2 ** n);
  check(`backoff ${n} top`, backoffDelay(n, 500, 15000, () => 0.999999) === Math.floor(0.999999 * ceiling));
  check(`backoff ${n} bottom`, backoffDelay(n, 500, 15000, () => 0) === 0);
  for (let i = 0; i < 50; i += 1) {
    const d = backoffDelay(n, 500, 15000);
    check(`backoff ${n} in range`, d >= 0 && d < ceiling);
  }
}
check('backoff capped for huge attempts', backoffDelay(1e6, 500, 15000, () => 0.5) === 7500);

check('no peers: no verdict', classifyQuality({ rtt: 10, loss: 0, bitrateIn: 1e6, peers: 0 }) === null);
check('good', classifyQuality({ rtt: 20, loss: 0, bitrateIn: 1e6, peers: 1 }) === 'good');
check('fair by rtt', classifyQuality({ rtt: 200, loss: 0, bitrateIn: 1e6, peers: 1 }) === 'fair');
check('fair by loss', classifyQuality({ rtt: 20, loss: 0.03, bitrateIn: 1e6, peers: 1 }) === 'fair');
check('fair by bitrate', classifyQuality({ rtt: 20, loss: 0, bitrateIn: 1000, peers: 1 }) === 'fair');
check('poor by rtt', classifyQuality({ rtt: 500, loss: 0, bitrateIn: 1e6, peers: 1 }) === 'poor');
check('poor by loss', classifyQuality({ rtt: 20, loss: 0.1, bitrateIn: 1e6, peers: 1 }) === 'poor');

check('denied', mediaErrorCode({ name: 'NotAllowedError' }) === 'MEDIA_PERMISSION_DENIED');
check('missing', mediaErrorCode({ name: 'NotFoundError' }) === 'MEDIA_UNAVAILABLE');

const e = new SignalgridErrorEvent('ROOM_FULL', 'full', { n: 2 }, { source: 'ws', fatal: true });
check('typed event', e.type === 'sg-error' && e.code === 'ROOM_FULL' && e.fatal && e.details.n === 2);

// Server frames become typed events.
const c = new SignalgridClient({ token: 't', baseUrl: 'http://127.0.0.1:1' });
const seen = [];
c.addEventListener('sg-error', (ev) => seen.push([ev.code, ev.fatal]));
c._onFrame('error', { code: 'PEER_NOT_FOUND', message: 'x', details: {} });
c._onFrame('error', { code: 'OUTSIDE_TIME_WINDOW', message: 'x', details: {} });
check('error frames surface', JSON.stringify(seen) === JSON.stringify([['PEER_NOT_FOUND', false], ['OUTSIDE_TIME_WINDOW', true]]));
check('refusal fails the client', c.state === 'failed');

// A join answered by a passing failure is tried again (not given up); a refusal is final.
{
  const sent = [];
  const j = new SignalgridClient({ token: 't', baseUrl: 'http://127.0.0.1:1', roomId: 'room-1', reconnect: { baseMs: 1, maxMs: 1 } });
  const fake = { readyState: 1, send: (f) => sent.push(JSON.parse(f).event), close() {} };
  globalThis.WebSocket = globalThis.WebSocket || { OPEN: 1 };
  j.ws = fake;
  j._onFrame('connected', { socketId: 's1', nodeId: 'n1', heartbeatMs: 25000 });
  await until(() => sent.length === 1);
  j._onFrame('error', { code: 'STORE_UNAVAILABLE', message: 'x', details: {} });
  await until(() => sent.length === 2);
  check('join retried after STORE_UNAVAILABLE', sent.join() === 'join-room,join-room' && j.state !== 'failed');
  j._onFrame('error', { code: 'ROOM_FULL', message: 'x', details: {} });
  check('ROOM_FULL is final', j.state === 'failed');
}

// The join retry timer does not outlive the join: a passing error taken for the join's answer
// schedules a retry; the real `room-joined` that follows cancels it, so no second join-room
// goes out. An error a join never answers with (PEER_NOT_FOUND, from a stale relay) schedules
// nothing. The clock is a fake one, so "no second join" is checked by running every pending
// timer rather than by waiting.
{
  const pending = new Map();
  let nextId = 1;
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  globalThis.setTimeout = (fn) => { const id = nextId++; pending.set(id, fn); return id; };
  globalThis.clearTimeout = (id) => { pending.delete(id); };
  const runPending = () => {
    for (let round = 0; round < 10 && pending.size > 0; round += 1) {
      for (const [id, fn] of [...pending]) { pending.delete(id); fn(); }
    }
  };
  try {
    const sent = [];
    const j = new SignalgridClient({ token: 't', baseUrl: 'http://127.0.0.1:1', roomId: 'room-2', reconnect: { baseMs: 1000, maxMs: 1000 } });
    j.ws = { readyState: 1, send: (f) => sent.push(JSON.parse(f).event), close() {} };
    j._onFrame('connected', { socketId: 's2', nodeId: 'n1', heartbeatMs: 25000 });
    check('join sent on connected', sent.join() === 'join-room');
    j._onFrame('error', { code: 'PEER_NOT_FOUND', message: 'x', details: { to: 'old-peer' } });
    runPending();
    check('PEER_NOT_FOUND is not the join\'s answer', sent.join() === 'join-room');
    j._onFrame('error', { code: 'RATE_LIMITED', message: 'x', details: {} });
    j._onFrame('room-joined', { roomId: 'room-2', participants: [{ socketId: 's2', userId: 'u', userName: 'U', userRole: 'client' }] });
    runPending();
    check('room-joined cancels the join retry', sent.filter((e) => e === 'join-room').length === 1 && j.state === 'joined');
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  }
}

await resumeChecks(check);
await callChecks(check);

process.stdout.write(`${JSON.stringify({ ok: failures.length === 0, failures, errorCodes: ERROR_CODES })}\n`);
