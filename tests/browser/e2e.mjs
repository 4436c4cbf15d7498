// End-to-end calls through signalgrid in real headless Chromium (Debian's /usr/bin/chromium),
// driven by playwright-core. Started by tests/browser.rs, which starts the node(s), makes the
// sessions and passes a JSON plan (argv[2]); this script prints one JSON result line on
// stdout and logs to stderr. Every wait is bounded; waits poll a condition, never sleep for
// a fixed time as synchronisation.
//
// Plan: { chromium, outDir, timeoutMs,
//         call:   { clientUrl, psyUrl },           // (a) + (c), same session, one node
//         early:  { url },                         // (e) outside the time window
//         embed?: { hostUrl, callPath, token },    // token by postMessage from a parent page
//         group?: { urls: [..] },                  // a Group session: three pages, a full mesh
//         denied?: { clientUrl, psyUrl },          // the client's browser refuses camera and
//                                                  // microphone: receive only
//         crossOrigin?: { hostUrl, apiBase, refusedBase, token, sessionId },
//                                                  // a page of another origin loads the
//                                                  // library from apiBase and calls its REST
//                                                  // API; refusedBase does not allow it
//         cluster?: { clientUrl, psyUrl, lb },     // (b) two nodes; the session's window
//                                                  // ends within 10 minutes: both pages show
//                                                  // the session-ending notice
//         waitingRoom?: { clientUrl, psyUrl, lb, hostName, chatText, replyText },
//                                                  // a waiting-room session, the client on
//                                                  // one node and the psychologist on another:
//                                                  // lobby (no RTCPeerConnection), admit panel,
//                                                  // Deny (refusal, still none), Ask again,
//                                                  // Admit, the call, chat both ways (unread
//                                                  // count, text never HTML), mute and camera
//                                                  // off shown as badges on the other side
//         resumeDrain?: { clientUrl, psyUrl, node, lb },  // (d) resume (not rejoin) across a drain:
//                                                  // this script prints `DRAIN <node>` on
//                                                  // stdout and the harness drains that node;
//         resumeKill?: { clientUrl, psyUrl, node },   // across a kill -9 (`KILL <node>`: the
//                                                  // harness kills that node process without
//                                                  // warning);
//         resumeOffline?: { clientUrl, psyUrl, node } }  // and across the client's page
//                                                  // going offline (CDP network emulation, and
//                                                  // `UNPLUG <node>`: the harness cuts the
//                                                  // page's link to that node) until the node
//                                                  // gives the socket up (its heartbeat times
//                                                  // out: the psychologist sees the client
//                                                  // away), then online (`PLUG <node>`).
//                                                  // The client's page lists the other node in
//                                                  // `?signaling=`; the psychologist is on it.
//       lb: { base }: the pages are served by nginx at `base` (deploy/nginx/signalgrid.conf,
//       round robin over two nodes, no sticky sessions), and so are their REST calls and
//       sockets. The first page's socket lands where round robin puts it (resumeDrain: on
//       `node`, the one the harness drains), the second page's on the other node: steered
//       by requests made through nginx just before the page opens (openThrough). Each page's result gets `via`: its origin, its
//       socket's URL, its node and the number of tries.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { throughNginx } from './through-nginx.mjs';

const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const WAIT = plan.timeoutMs || 30000;
const log = (...a) => console.error('[e2e]', ...a);
const result = { ok: true, scenarios: {}, screenshots: [], failures: [] };
fs.mkdirSync(plan.outDir, { recursive: true });

// Counts every RTCPeerConnection the page makes (the real one, subclassed), so that a test
// can read the real connections' state and stats, and prove that none was made.
const INSTRUMENT = `(() => {
  const Real = window.RTCPeerConnection;
  if (!Real) return;
  window.__sgPCs = [];
  class Observed extends Real {
    constructor(...args) { super(...args); window.__sgPCs.push(this); }
  }
  window.RTCPeerConnection = Observed;
})();`;

/** Polls `probe` (async, returns a value) until `ok(value)`; bounded by `ms`. */
async function until(what, probe, ok, ms = WAIT) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; last value ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100)); // poll interval, not a synchronisation sleep
  }
}

/** Live (not closed) peer connections: states, and video frames decoded per getStats. */
function pcInfo(page) {
  return page.evaluate(async () => {
    const pcs = (window.__sgPCs || []);
    const live = pcs.filter((pc) => pc.connectionState !== 'closed');
    let framesDecoded = 0;
    let frameWidth = 0;
    const senders = [];
    const perPc = [];
    for (const pc of live) {
      const stats = await pc.getStats();
      let mine = 0;
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          framesDecoded += s.framesDecoded || 0;
          mine += s.framesDecoded || 0;
          frameWidth = Math.max(frameWidth, s.frameWidth || 0);
        }
      });
      perPc.push({ state: pc.connectionState, framesDecoded: mine });
      for (const s of pc.getSenders()) if (s.track) senders.push(`${s.track.kind}:${s.track.label}:${s.track.readyState}`);
    }
    // The most recent peer connection on its own (after a reconnect, the new one).
    let latest = null;
    const last = pcs[pcs.length - 1];
    if (last) {
      let frames = 0;
      if (last.connectionState !== 'closed') {
        (await last.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0; });
      }
      latest = { index: pcs.length - 1, state: last.connectionState, framesDecoded: frames };
    }
    const tiles = [...document.querySelectorAll('.remote-tile')].map((t) => ({
      name: t.querySelector('.label').textContent, width: t.querySelector('video').videoWidth }));
    return {
      created: pcs.length,
      latest,
      node: window.signalgridCall?.client?.nodeId || null,
      states: live.map((pc) => pc.connectionState),
      framesDecoded,
      frameWidth,
      senders,
      perPc,
      tiles,
      remoteVideoWidth: Math.max(0, ...tiles.map((t) => t.width)),
      peerName: document.getElementById('peer-name')?.textContent,
      status: document.getElementById('status')?.dataset.status,
      statusText: document.getElementById('status')?.textContent,
      quality: document.getElementById('quality')?.dataset.quality,
      errors: [...document.querySelectorAll('.error')].map((e) => ({ code: e.dataset.code, text: e.innerText })),
    };
  });
}

const connected = (i) => i.states.includes('connected');

/** Waits until the page decodes video frames and the count grows; returns [before, after]. */
async function framesGrow(page, what) {
  const a = await until(`${what}: video frames decoded`, () => pcInfo(page), (i) => i.framesDecoded > 0);
  const b = await until(`${what}: more video frames decoded`, () => pcInfo(page), (i) => i.framesDecoded > a.framesDecoded);
  return [a.framesDecoded, b.framesDecoded];
}

async function shot(page, name) {
  const file = path.join(plan.outDir, `${name}.png`);
  await page.screenshot({ path: file });
  result.screenshots.push(file);
}

let browser;
/** A second Chromium whose (fake) permission prompt refuses camera and microphone. */
let denyingBrowser;
const contexts = [];

async function openPage(url, name, from = browser) {
  // One context per participant: separate storage and permission grants, as two people.
  const ctx = await from.newContext({ permissions: ['camera', 'microphone'], viewport: { width: 960, height: 600 } });
  contexts.push(ctx);
  await ctx.addInitScript(INSTRUMENT);
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') log(`${name} console.${m.type()}:`, m.text()); });
  page.on('pageerror', (e) => log(`${name} page error:`, String(e)));
  await page.goto(url, { timeout: WAIT });
  return page;
}

// Pages through nginx: VIA, openThrough, twoPagesThrough (through-nginx.mjs).
const { VIA, openThrough, twoPagesThrough } = throughNginx({ openPage, until, log, forget: (ctx) => contexts.splice(contexts.indexOf(ctx), 1) });

async function scenario(name, fn) {
  const t0 = Date.now();
  const opened = contexts.length;
  try {
    result.scenarios[name] = await fn();
    result.scenarios[name].ok = true;
  } catch (e) {
    result.ok = false;
    result.failures.push(`${name}: ${e && e.stack ? e.stack : e}`);
    result.scenarios[name] = { ok: false, error: String(e) };
  }
  // Close this scenario's pages: two cores are shared, idle calls would still encode video.
  for (const c of contexts.splice(opened)) await c.close().catch(() => {});
  result.scenarios[name].ms = Date.now() - t0;
  log(`${name}: ${result.scenarios[name].ok ? 'ok' : 'FAILED'} in ${result.scenarios[name].ms} ms`);
}

async function twoPartyCall(tag, clientUrl, psyUrl) {
  const client = await openPage(clientUrl, `${tag}-client`);
  const psy = await openPage(psyUrl, `${tag}-psychologist`);
  return callUp(tag, client, psy);
}

/** Both pages' peer connections connected, video decoded both ways, quality shown. */
async function callUp(tag, client, psy) {
  const c = await until(`${tag}: client connected`, () => pcInfo(client), connected);
  const p = await until(`${tag}: psychologist connected`, () => pcInfo(psy), connected);
  const clientFrames = await framesGrow(client, `${tag} client`);
  const psyFrames = await framesGrow(psy, `${tag} psychologist`);
  const clientQ = await until(`${tag}: client quality badge`, () => pcInfo(client), (i) => ['good', 'fair', 'poor'].includes(i.quality));
  const psyQ = await until(`${tag}: psychologist quality badge`, () => pcInfo(psy), (i) => ['good', 'fair', 'poor'].includes(i.quality));
  await until(`${tag}: remote picture on both`, async () => [await pcInfo(client), await pcInfo(psy)],
    ([a, b]) => a.remoteVideoWidth > 0 && b.remoteVideoWidth > 0);
  return { client, psy, info: {
    client: { states: c.states, framesDecoded: clientFrames, quality: clientQ.quality, status: clientQ.status, created: clientQ.created, node: clientQ.node },
    psychologist: { states: p.states, framesDecoded: psyFrames, quality: psyQ.quality, status: psyQ.status, created: psyQ.created, node: psyQ.node },
  } };
}

/** The waiting room as the page shows it: the lobby (client), the admit panel (hosts). */
function lobbyInfo(page) {
  return page.evaluate(() => {
    const lobby = document.getElementById('lobby');
    const panel = document.getElementById('admit-panel');
    return {
      state: window.signalgridCall?.client?.state || null,
      created: (window.__sgPCs || []).length,
      lobbyShown: !lobby.hidden,
      denied: lobby.dataset.denied === 'true',
      lobbyText: lobby.innerText,
      askAgainShown: !document.getElementById('btn-ask-again').hidden,
      panelShown: !panel.hidden,
      panelText: panel.innerText,
      waitingCount: document.getElementById('waiting-count').textContent,
      waitingNames: [...document.querySelectorAll('#waiting-list .waiting-name')].map((n) => n.textContent),
      panelLive: document.getElementById('waiting-announce').getAttribute('aria-live'),
      panelAnnounce: document.getElementById('waiting-announce').textContent,
      status: document.getElementById('status').dataset.status,
    };
  });
}

/** The chat panel as the page shows it. */
function chatInfo(page) {
  return page.evaluate(() => {
    const unread = document.getElementById('chat-unread');
    return {
      open: !document.getElementById('chat-panel').hidden,
      expanded: document.getElementById('btn-chat').getAttribute('aria-expanded'),
      unread: unread.hidden ? 0 : Number(unread.textContent),
      lines: [...document.querySelectorAll('#chat-log .chat-line')].map((l) => ({
        from: l.querySelector('.chat-from').textContent, text: l.querySelector('.chat-text').textContent, state: l.dataset.state || null })),
      // Chat text is text: no element made from it.
      elementsInTexts: document.querySelectorAll('#chat-log .chat-text *').length,
      logLive: document.getElementById('chat-log').getAttribute('aria-live'),
      focused: document.activeElement?.id || null,
    };
  });
}

/** The badges on the remote tiles: [{name, muted, cameraOff}]. */
function badgeInfo(page) {
  return page.evaluate(() => [...document.querySelectorAll('.remote-tile')].map((t) => ({
    name: t.querySelector('.label').textContent,
    muted: !!t.querySelector('.badge-muted'),
    cameraOff: !!t.querySelector('.badge-camera-off'),
  })));
}

/** What a page's client saw from now on (for the resume scenarios), and its live peer
 *  connections now, kept to compare by identity later. */
const WATCH = () => {
  const c = window.signalgridCall.client;
  window.__sgSeen = [];
  for (const t of ['reconnecting', 'resumed', 'rejoined', 'peer-reconnecting', 'peer-reconnected', 'peer-left',
    'user-left', 'socket-closed', 'ice-restart']) {
    c.addEventListener(t, (e) => window.__sgSeen.push(t === 'resumed' ? `resumed:${e.detail.lost}`
      : t === 'socket-closed' ? `socket-closed:${e.detail.code}` : t === 'peer-left' ? `peer-left:${e.detail.reason}` : t));
  }
  c.addEventListener('sg-error', (e) => window.__sgSeen.push(`error:${e.code}`));
  window.__sgPcsThen = window.__sgPCs.filter((pc) => pc.connectionState !== 'closed');
  return { socketId: c.socketId, nodeId: c.nodeId, pcs: window.__sgPcsThen.length };
};
const SEEN = () => {
  const c = window.signalgridCall.client;
  const then = window.__sgPcsThen;
  return {
    state: c.state, socketId: c.socketId, nodeId: c.nodeId, seen: window.__sgSeen,
    // The same RTCPeerConnection objects, still open, and no new one.
    samePcs: then.length > 0 && then.every((pc) => pc.connectionState !== 'closed')
      && window.__sgPCs.filter((pc) => pc.connectionState !== 'closed').every((pc) => then.includes(pc)),
    badges: document.querySelectorAll('.away-badge').length,
    status: document.getElementById('status').dataset.status,
  };
};

/**
 * A resume scenario: a call, then `disrupt(client)`; the client resumes its seat: same
 * socket id, the same peer connections on both sides, video keeps being decoded on both,
 * and the psychologist never sees the client leave.
 */
async function resumeScenario(tag, cfg, disrupt) {
  let through = null;
  if (cfg.lb) through = await twoPagesThrough(tag, cfg, 'client', cfg.node);
  const { client, psy, info } = through ? await callUp(tag, through.client, through.psy)
    : await twoPartyCall(tag, cfg.clientUrl, cfg.psyUrl);
  const before = await client.evaluate(WATCH);
  await psy.evaluate(WATCH);
  await disrupt(client, psy);
  // Resumed, or (a failure the harness reports) joined again as a new seat.
  const back = await until(`${tag}: the client resumed`, () => client.evaluate(SEEN),
    (s) => s.state === 'joined' && s.seen.some((x) => x.startsWith('resumed:') || x === 'rejoined'), WAIT * 2);
  const cf = await framesGrow(client, `${tag} client after the resume`);
  const pf = await framesGrow(psy, `${tag} psychologist after the resume`);
  const c = await until(`${tag}: the client page connected again`, () => client.evaluate(SEEN), (s) => s.status === 'connected');
  const p = await until(`${tag}: no "Reconnecting…" badge left`, () => psy.evaluate(SEEN), (s) => s.badges === 0);
  await shot(client, `${tag}-client-after`);
  // Through nginx: where the pages' sockets went, before and after the resume.
  const via = through && { before: through.via, after: { client: await client.evaluate(VIA), psychologist: await psy.evaluate(VIA) } };
  return { call: info, before, via, client: { ...c, framesAfter: cf, resumedAt: back }, psychologist: { ...p, framesAfter: pf },
    checks: {
      sameSocket: c.socketId === before.socketId,
      clientSamePcs: c.samePcs,
      psySamePcs: p.samePcs,
      psyNeverSawLeave: !p.seen.some((x) => x.startsWith('peer-left') || x === 'user-left'),
      clientNoRejoin: !c.seen.includes('rejoined'),
      socketLost: c.seen.some((x) => x.startsWith('socket-closed')),
    } };
}

async function main() {
  // playwright's launch() gives Chromium a fresh, empty profile directory of its own.
  const launch = (prompt) => chromium.launch({
    executablePath: plan.chromium || '/usr/bin/chromium',
    headless: true,
    timeout: WAIT,
    args: [
      '--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', prompt,
      '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic', '--auto-select-desktop-capture-source=Entire screen',
    ],
  });
  browser = await launch('--use-fake-ui-for-media-stream');
  try {
    // (a) + (c): a call on one node; then camera off/on and a screen share on the client's side.
    await scenario('call', async () => {
      const { client, psy, info } = await twoPartyCall('call', plan.call.clientUrl, plan.call.psyUrl);
      await shot(client, 'call-client');
      await shot(psy, 'call-psychologist');

      // (c) camera off and on again, then share the screen.
      await client.click('#btn-video');
      await until('camera off', () => client.getAttribute('#btn-video', 'data-on'), (v) => v === 'false');
      const off = await pcInfo(client);
      await client.click('#btn-video');
      await until('camera on', () => client.getAttribute('#btn-video', 'data-on'), (v) => v === 'true');
      const afterCamera = await framesGrow(psy, 'after camera toggle');
      await client.click('#btn-screen');
      await until('screen shared', () => client.getAttribute('#btn-screen', 'data-on'), (v) => v === 'true');
      const sharing = await until('the screen track is being sent', () => pcInfo(client),
        (i) => i.senders.some((s) => s.startsWith('video:screen')));
      const s0 = (await pcInfo(psy)).framesDecoded;
      const afterShare = await until('psychologist decodes the shared screen', () => pcInfo(psy), (i) => i.framesDecoded > s0);
      const afterShare2 = await until('and keeps decoding', () => pcInfo(psy), (i) => i.framesDecoded > afterShare.framesDecoded);
      await shot(client, 'call-client-sharing');
      await shot(psy, 'call-psychologist-receiving-screen');

      // Mute and unmute.
      await client.click('#btn-audio');
      const muted = await client.getAttribute('#btn-audio', 'data-on');
      await client.click('#btn-audio');

      // End the call (the psychologist): both pages show the end.
      await psy.click('#btn-end');
      const endC = await until('client sees the end', () => pcInfo(client), (i) => i.status === 'ended');
      const endP = await until('psychologist sees the end', () => pcInfo(psy), (i) => i.status === 'ended');
      await shot(psy, 'call-ended');
      return {
        ...info,
        toggle: {
          sendersWhileCameraOff: off.senders,
          framesAfterCameraOn: afterCamera,
          sendersWhileSharing: sharing.senders,
          framesAfterShare: [s0, afterShare.framesDecoded, afterShare2.framesDecoded],
          mutedButton: muted,
        },
        ended: { client: endC.statusText, psychologist: endP.statusText, clientLive: endC.states.length },
      };
    });

    // (e) outside the time window: the friendly reason, and no peer connection ever.
    await scenario('early', async () => {
      const page = await openPage(plan.early.url, 'early');
      const info = await until('the refusal', () => pcInfo(page), (i) => i.status === 'refused');
      await shot(page, 'call-too-early');
      const again = await pcInfo(page);
      return { status: info.status, errors: again.errors, created: again.created,
        hasGetUserMediaRun: await page.evaluate(() => !!document.getElementById('local-video').srcObject) };
    });

    // The token by postMessage from an embedding platform page.
    if (plan.embed) {
      await scenario('embed', async () => {
        const page = await openPage(plan.embed.hostUrl, 'embed');
        await page.evaluate(({ callPath, token }) => {
          document.body.innerHTML = '';
          window.__messages = [];
          window.addEventListener('message', (e) => {
            window.__messages.push(e.data && e.data.type);
            if (e.data && e.data.type === 'signalgrid:ready') {
              e.source.postMessage({ type: 'signalgrid:token', token, userName: 'Embedded Alice' }, e.origin);
            }
          });
          const f = document.createElement('iframe');
          f.id = 'call';
          f.allow = 'camera; microphone; display-capture';
          f.style.cssText = 'width:900px;height:560px;border:0';
          f.src = callPath;
          document.body.append(f);
        }, plan.embed);
        const frame = await until('the iframe', async () => page.frame({ url: (u) => u.pathname.startsWith('/call/') }), (f) => !!f);
        const joined = await until('embedded page in the room', () => frame.evaluate(() => window.signalgridCall?.client?.state),
          (s) => s === 'joined');
        await shot(page, 'call-embedded');
        // A dropped socket (a close without a status code, not a departure): the library
        // resumes its seat (same socket id), it does not join again.
        const first = await frame.evaluate(() => window.signalgridCall.client.socketId);
        await frame.evaluate(() => {
          window.__sgEvents = [];
          const c = window.signalgridCall.client;
          for (const t of ['reconnecting', 'resumed', 'rejoined']) c.addEventListener(t, () => window.__sgEvents.push(t));
          c.addEventListener('sg-error', (e) => window.__sgEvents.push(e.code));
          c.ws.close();
        });
        const back = await until('embedded page resumed after a dropped socket',
          () => frame.evaluate(() => ({ state: window.signalgridCall.client.state, socketId: window.signalgridCall.client.socketId, events: window.__sgEvents })),
          (s) => s.state === 'joined' && (s.events.includes('resumed') || s.events.includes('rejoined')));
        const status = await frame.evaluate(() => document.getElementById('status').textContent);
        return { status, clientState: joined, reconnect: back.events, socketIds: [first, back.socketId],
          messages: await page.evaluate(() => window.__messages) };
      });
    }

    // A Group session with three people: each page connects to both others and shows both.
    if (plan.group) {
      await scenario('group', async () => {
        const pages = [];
        for (const [i, url] of plan.group.urls.entries()) pages.push(await openPage(url, `group-${i}`));
        const meshed = (i) => i.perPc.length === 2 && i.perPc.every((p) => p.state === 'connected' && p.framesDecoded > 0)
          && i.tiles.length === 2 && i.tiles.every((t) => t.width > 0);
        const seen = [];
        for (const [i, page] of pages.entries()) seen.push(await until(`group page ${i}: both others connected and seen`, () => pcInfo(page), meshed));
        // Video keeps coming from both others.
        const later = [];
        for (const [i, page] of pages.entries()) {
          later.push(await until(`group page ${i}: frames keep coming from both`, () => pcInfo(page),
            (x) => x.perPc.length === 2 && x.perPc.every((p, k) => p.framesDecoded > seen[i].perPc[k].framesDecoded)));
        }
        await shot(pages[0], 'group-client');
        // One leaves: the others drop its tile and keep each other.
        await pages[2].evaluate(() => window.signalgridCall.client.leave());
        const after = [];
        for (const [i, page] of pages.slice(0, 2).entries()) {
          after.push(await until(`group page ${i}: the leaver's tile gone`, () => pcInfo(page),
            (x) => x.tiles.length === 1 && x.perPc.length === 1 && x.perPc[0].state === 'connected'));
        }
        return {
          pages: seen.map((x, i) => ({ tiles: x.tiles, peerName: x.peerName, perPc: x.perPc, laterFrames: later[i].perPc.map((p) => p.framesDecoded) })),
          afterLeave: after.map((x) => ({ tiles: x.tiles, pcs: x.perPc.length })),
        };
      });
    }

    // The client refuses camera and microphone: told why, and still sees and hears the other.
    if (plan.denied) {
      await scenario('denied', async () => {
        denyingBrowser = await launch('--use-fake-ui-for-media-stream=deny');
        const client = await openPage(plan.denied.clientUrl, 'denied-client', denyingBrowser);
        const psy = await openPage(plan.denied.psyUrl, 'denied-psychologist');
        const c = await until('denied: client connected', () => pcInfo(client), connected);
        const p = await until('denied: psychologist connected', () => pcInfo(psy), connected);
        const clientFrames = await framesGrow(client, 'denied client');
        const ci = await until('denied: the reason shown', () => pcInfo(client), (i) => i.errors.length > 0);
        const pi = await pcInfo(psy);
        await shot(client, 'call-camera-denied');
        return {
          client: { states: c.states, framesDecoded: clientFrames, senders: ci.senders, errors: ci.errors, status: ci.status,
            localVideo: await client.evaluate(() => !!document.getElementById('local-video').srcObject),
            buttons: await client.evaluate(() => Object.fromEntries(['btn-video', 'btn-audio'].map((id) => {
              const b = document.getElementById(id);
              return [id, { text: b.textContent, disabled: b.disabled }];
            }))) },
          psychologist: { states: p.states, framesDecoded: pi.framesDecoded },
        };
      });
    }

    // A platform page on another origin: the library module and the REST calls cross origins.
    if (plan.crossOrigin) {
      await scenario('crossOrigin', async () => {
        const page = await openPage(plan.crossOrigin.hostUrl, 'cross-origin');
        return page.evaluate(async ({ apiBase, refusedBase, token, sessionId }) => {
          const m = await import(`${apiBase}/web/signalgrid-client.js`);
          const client = new m.SignalgridClient({ token, sessionId, baseUrl: apiBase });
          const verdict = await client.canJoin();
          const ice = await client.fetchIceServers();
          let refused = 'answered';
          try {
            await new m.SignalgridClient({ token, sessionId, baseUrl: refusedBase, timeoutMs: 5000 }).canJoin();
          } catch (e) {
            refused = e.code;
          }
          return { origin: location.origin, canJoin: verdict.canJoin, iceServers: ice.length, refused };
        }, plan.crossOrigin);
      });
    }

    // (b) two nodes of a cluster.
    if (plan.cluster) {
      await scenario('cluster', async () => {
        // Through nginx when the plan says so: the client first, the psychologist on the other node.
        const through = plan.cluster.lb && await twoPagesThrough('cluster', plan.cluster, 'client');
        const { client, psy, info } = through ? await callUp('cluster', through.client, through.psy)
          : await twoPartyCall('cluster', plan.cluster.clientUrl, plan.cluster.psyUrl);
        if (through) info.via = through.via;
        const notice = (page) => page.evaluate(() => {
          const n = document.getElementById('notice');
          return n.hidden ? null : { text: n.textContent, role: n.getAttribute('role') };
        });
        info.notices = await until('cluster: the session-ending notice on both pages', async () => [await notice(client), await notice(psy)],
          ([a, b]) => !!a && !!b);
        await shot(client, 'cluster-client');
        await shot(psy, 'cluster-psychologist');
        return info;
      });
    }

    // The waiting room, across two nodes: lobby, admit panel, deny, ask again, admit, the
    // call, chat and media state.
    if (plan.waitingRoom) {
      await scenario('waitingRoom', async () => {
        const w = plan.waitingRoom;
        // The psychologist first: the client's arrival is announced live. Through nginx when
        // the plan says so: the client's socket on the other node.
        let psy;
        let client;
        let through = null;
        if (w.lb) {
          const first = await openThrough(w.psyUrl, 'waiting-psychologist', w.lb, () => true, 'any');
          psy = first.page;
          await until('waiting: the psychologist in the room', () => lobbyInfo(psy), (i) => i.state === 'joined');
          const second = await openThrough(w.clientUrl, 'waiting-client', w.lb, (n) => n !== first.via.node,
            `a node other than ${first.via.node}`);
          client = second.page;
          through = { client: second.via, psychologist: first.via };
        } else {
          psy = await openPage(w.psyUrl, 'waiting-psychologist');
          await until('waiting: the psychologist in the room', () => lobbyInfo(psy), (i) => i.state === 'joined');
          client = await openPage(w.clientUrl, 'waiting-client');
        }
        const lobby = await until('waiting: the client\'s lobby', () => lobbyInfo(client),
          (i) => i.state === 'waiting' && i.lobbyShown && i.lobbyText.includes(w.hostName));
        const panel = await until('waiting: the admit panel', () => lobbyInfo(psy), (i) => i.panelShown && i.waitingNames.length === 1);
        await shot(client, 'waiting-lobby-client');
        await shot(psy, 'waiting-admit-panel-psychologist');
        const lobbyAfter = await lobbyInfo(client);

        // Deny: the client is told, and still has no peer connection.
        await psy.click('#waiting-list button.deny');
        const denied = await until('waiting: the refusal', () => lobbyInfo(client), (i) => i.state === 'denied' && i.denied);
        const panelAfterDeny = await until('waiting: the panel empties', () => lobbyInfo(psy), (i) => !i.panelShown);
        await shot(client, 'waiting-denied-client');

        // Ask again, then Admit: the call.
        await client.click('#btn-ask-again');
        await until('waiting: waits again', () => lobbyInfo(client), (i) => i.state === 'waiting' && !i.denied);
        await until('waiting: the panel again', () => lobbyInfo(psy), (i) => i.panelShown && i.waitingNames.length === 1);
        const beforeAdmit = await lobbyInfo(client);
        await psy.click('#waiting-list button.admit');
        const { info } = await callUp('waiting', client, psy);
        const admitted = await until('waiting: lobby gone, panel gone', async () => [await lobbyInfo(client), await lobbyInfo(psy)],
          ([c, p]) => !c.lobbyShown && !p.panelShown);

        // Chat: the psychologist writes (Enter sends); the client's closed panel counts it.
        await psy.click('#btn-chat');
        await psy.fill('#chat-input', w.chatText);
        await psy.press('#chat-input', 'Enter');
        const unread = await until('chat: unread count on the client', () => chatInfo(client), (i) => i.unread === 1 && !i.open);
        await shot(client, 'waiting-chat-unread-client');
        // The client opens the chat from the keyboard and answers.
        await client.focus('#btn-chat');
        await client.keyboard.press('Enter');
        const opened = await until('chat: opened, read', () => chatInfo(client), (i) => i.open && i.unread === 0);
        await client.keyboard.type(w.replyText);
        await client.keyboard.press('Enter');
        const psyChat = await until('chat: the reply reaches the psychologist', () => chatInfo(psy),
          (i) => i.lines.some((l) => l.text === w.replyText) && i.lines.every((l) => l.state !== 'sending'));
        const clientChat = await until('chat: the reply is confirmed', () => chatInfo(client),
          (i) => i.lines.some((l) => l.text === w.replyText && l.state === 'sent'));
        await shot(client, 'waiting-chat-client');

        // Mute and camera off on the client: badges on the psychologist's tile of the client.
        await client.click('#btn-audio');
        const muted = await until('media: the muted badge', () => badgeInfo(psy), (b) => b.length === 1 && b[0].muted);
        await client.click('#btn-video');
        const camOff = await until('media: the camera-off badge', () => badgeInfo(psy), (b) => b.length === 1 && b[0].cameraOff);
        await shot(psy, 'waiting-badges-psychologist');
        await client.click('#btn-audio');
        const unmuted = await until('media: the muted badge gone', () => badgeInfo(psy), (b) => b.length === 1 && !b[0].muted);
        // Where the sockets are at the end: still through nginx, still on two nodes.
        const via = through && { start: through, end: { client: await client.evaluate(VIA), psychologist: await psy.evaluate(VIA) } };
        return {
          ...info,
          via,
          lobby, lobbyAfter, panel, denied, panelAfterDeny, beforeAdmit, admitted: admitted.map((x) => ({ lobbyShown: x.lobbyShown, panelShown: x.panelShown })),
          chat: { unread, opened, client: clientChat, psychologist: psyChat },
          badges: { muted, camOff, unmuted },
          created: (await lobbyInfo(client)).created,
        };
      });
    }

    // Resume, not rejoin: the client's node drained, killed, or the client's page offline.
    if (plan.resumeDrain) {
      await scenario('resumeDrain', () => resumeScenario('resume-drain', plan.resumeDrain, async () => {
        process.stdout.write(`DRAIN ${plan.resumeDrain.node}\n`);
      }));
    }
    if (plan.resumeKill) {
      await scenario('resumeKill', () => resumeScenario('resume-kill', plan.resumeKill, async () => {
        process.stdout.write(`KILL ${plan.resumeKill.node}\n`);
      }));
    }
    if (plan.resumeOffline) {
      await scenario('resumeOffline', () => resumeScenario('resume-offline', plan.resumeOffline, async (client, psy) => {
        // Chromium's offline emulation leaves an open WebSocket alone, so the harness also
        // cuts the page's link to its node (`UNPLUG <node>`): nothing passes, nobody is told.
        const cdp = await client.context().newCDPSession(client);
        await cdp.send('Network.enable');
        const net = (offline) => cdp.send('Network.emulateNetworkConditions',
          { offline, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
        await net(true);
        process.stdout.write(`UNPLUG ${plan.resumeOffline.node}\n`);
        // Offline until the node gives the socket up (its heartbeat times out): the
        // psychologist is told that the client is away.
        await until('resume-offline: the psychologist sees the client away', () => psy.evaluate(SEEN),
          (s) => s.seen.includes('peer-reconnecting'), WAIT * 2);
        // Back online: the link's stale connections close, the page's socket is lost.
        await net(false);
        process.stdout.write(`PLUG ${plan.resumeOffline.node}\n`);
      }));
    }
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
    await browser.close().catch(() => {});
    if (denyingBrowser) await denyingBrowser.close().catch(() => {});
  }
}

main()
  .catch((e) => {
    result.ok = false;
    result.failures.push(`harness: ${e && e.stack ? e.stack : e}`);
  })
  .finally(() => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  });
