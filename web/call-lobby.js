// The call page's waiting room (`/call/:sessionId`, web/call.js), both sides of it:
// - a client who must wait sees the lobby: who will let them in (the psychologist's name
//   from the session, otherwise "your psychologist"), their own camera preview, and, when
//   turned away, the refusal with "Ask again";
// - a host (psychologist or admin) sees the admit panel: a highlighted banner with the
//   number of people waiting (no sound; `role="status"` announces each newcomer) and an
//   Admit and a Deny button per person.
// Uses the client library's `waiting`, `denied`, `waiting-list`, `settle-failed`, `admit`,
// `deny` and `askAgain` (docs/web-client.md).

const $ = (id) => document.getElementById(id);

/**
 * Wires the lobby and the admit panel to `client` (a SignalgridClient).
 * @param {object} page
 * @param {(s: string, text: string) => void} page.setStatus the header's status
 * @param {(msg: object) => void} page.tell                  a postMessage to the platform
 * @param {() => string|null} page.hostName                  the psychologist's name, if known
 */
export function setupLobby(client, { setStatus, tell, hostName }) {
  const room = $('room');
  const lobby = $('lobby');
  const who = () => hostName() || 'your psychologist';

  const showLobby = (denied) => {
    lobby.hidden = false;
    lobby.dataset.denied = String(denied);
    $('lobby-title').textContent = denied ? 'You were not let in' : 'You are in the waiting room';
    const name = who();
    $('lobby-text').textContent = denied
      ? `${name[0].toUpperCase()}${name.slice(1)} did not let you into the call. You can ask again.`
      : `Please wait: ${name} will let you in shortly. Your camera and microphone stay private until then.`;
    $('btn-ask-again').hidden = !denied;
    $('remote-placeholder').hidden = true;
  };

  client.addEventListener('waiting', () => {
    room.dataset.lobby = 'waiting';
    showLobby(false);
    setStatus('lobby', 'Waiting to be let in');
    tell({ type: 'signalgrid:waiting' });
  });
  client.addEventListener('denied', () => {
    room.dataset.lobby = 'denied';
    showLobby(true);
    setStatus('denied', 'Not let in');
    tell({ type: 'signalgrid:denied' });
  });
  client.addEventListener('admitted', () => {
    room.dataset.lobby = 'admitted';
    lobby.hidden = true;
    $('remote-placeholder').hidden = false;
    tell({ type: 'signalgrid:admitted' });
  });
  $('btn-ask-again').addEventListener('click', () => {
    if (client.askAgain()) $('btn-ask-again').disabled = true;
  });
  client.addEventListener('state', (e) => {
    if (e.detail.state === 'waiting') $('btn-ask-again').disabled = false;
  });

  // ---------------------------------------------------------------- hosts: the admit panel
  const panel = $('admit-panel');
  const list = $('waiting-list');
  const announce = $('waiting-announce');
  const known = new Set();

  const render = (waiting) => {
    panel.hidden = waiting.length === 0;
    panel.dataset.count = String(waiting.length);
    $('waiting-count').textContent = String(waiting.length);
    $('admit-title-text').textContent = waiting.length === 1 ? 'person is waiting to join' : 'people are waiting to join';
    const keep = new Set(waiting.map((w) => w.socketId));
    for (const li of [...list.children]) if (!keep.has(li.dataset.socketId)) li.remove();
    for (const w of waiting) {
      if (list.querySelector(`li[data-socket-id="${CSS.escape(w.socketId)}"]`)) continue;
      const li = document.createElement('li');
      li.dataset.socketId = w.socketId;
      const name = document.createElement('span');
      name.className = 'waiting-name';
      name.textContent = w.userName || w.userId;
      const admit = document.createElement('button');
      admit.type = 'button';
      admit.className = 'admit';
      admit.textContent = 'Admit';
      admit.setAttribute('aria-label', `Admit ${name.textContent}`);
      const deny = document.createElement('button');
      deny.type = 'button';
      deny.className = 'deny';
      deny.textContent = 'Deny';
      deny.setAttribute('aria-label', `Deny ${name.textContent}`);
      const note = document.createElement('span');
      note.className = 'waiting-note';
      admit.addEventListener('click', () => { admit.disabled = deny.disabled = client.admit(w.socketId); note.textContent = ''; });
      deny.addEventListener('click', () => { admit.disabled = deny.disabled = client.deny(w.socketId); note.textContent = ''; });
      li.append(name, admit, deny, note);
      list.append(li);
    }
    for (const id of [...known]) if (!keep.has(id)) known.delete(id);
  };

  client.addEventListener('participant-waiting', (e) => {
    if (known.has(e.detail.socketId)) return;
    known.add(e.detail.socketId);
    announce.textContent = `${e.detail.userName || 'Someone'} is waiting to join`;
  });
  client.addEventListener('waiting-list', (e) => render(e.detail.waiting));
  client.addEventListener('settle-failed', (e) => {
    const li = list.querySelector(`li[data-socket-id="${CSS.escape(e.detail.socketId)}"]`);
    if (!li) return;
    for (const b of li.querySelectorAll('button')) b.disabled = false;
    li.querySelector('.waiting-note').textContent = e.detail.code === 'ROOM_FULL'
      ? 'The call is full: someone has to leave first.' : 'That did not work; try again.';
  });
}
