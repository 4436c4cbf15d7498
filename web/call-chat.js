// The call page's chat panel (`/call/:sessionId`, web/call.js): a toggle button with the
// unread count while the panel is closed, the message log (an aria-live region), and a form
// whose Enter sends. Every text goes in as text (textContent), never as HTML. Uses the
// client library's `sendChat` and `chat-message` (docs/web-client.md).

const $ = (id) => document.getElementById(id);

function time(iso) {
  const d = iso ? new Date(iso) : new Date();
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Why a send failed, for the sender. */
function failure(code) {
  if (code === 'RATE_LIMITED') return 'Not sent: too many messages, wait a moment.';
  if (code === 'BAD_REQUEST') return 'Not sent: a message has 1 to 2000 characters.';
  if (code === 'NETWORK_ERROR') return 'Not sent: not connected.';
  return 'Not sent.';
}

/**
 * Wires the chat panel to `client` (a SignalgridClient).
 * @returns {{enable: (on: boolean) => void}} `enable(true)` once in the room
 */
export function setupChat(client) {
  const toggle = $('btn-chat');
  const panel = $('chat-panel');
  const log = $('chat-log');
  const form = $('chat-form');
  const input = $('chat-input');
  const unread = $('chat-unread');
  const announce = $('chat-announce');
  let count = 0;

  const setUnread = (n) => {
    count = n;
    unread.textContent = String(n);
    unread.hidden = n === 0;
    toggle.dataset.unread = String(n);
    toggle.setAttribute('aria-label', n ? `Chat, ${n} unread message${n === 1 ? '' : 's'}` : 'Chat');
  };
  const open = (on) => {
    panel.hidden = !on;
    toggle.setAttribute('aria-expanded', String(on));
    document.getElementById('room').dataset.chat = String(on);
    if (on) {
      setUnread(0);
      input.focus();
    }
  };

  /** One line of the log: who, when, the text (as text). */
  const line = (who, text, at, mine) => {
    const li = document.createElement('li');
    li.className = mine ? 'chat-line mine' : 'chat-line';
    const head = document.createElement('div');
    head.className = 'chat-head';
    const from = document.createElement('span');
    from.className = 'chat-from';
    from.textContent = who;
    const when = document.createElement('time');
    when.textContent = time(at);
    if (at) when.dateTime = at;
    head.append(from, when);
    const body = document.createElement('p');
    body.className = 'chat-text';
    body.textContent = text;
    li.append(head, body);
    log.append(li);
    log.scrollTop = log.scrollHeight;
    return li;
  };

  toggle.addEventListener('click', () => open(panel.hidden));
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      open(false);
      toggle.focus();
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    input.value = '';
    const li = line('You', text, null, true);
    li.dataset.state = 'sending';
    try {
      const { id } = await client.sendChat(text);
      li.dataset.state = 'sent';
      li.dataset.id = id;
    } catch (err) {
      li.dataset.state = 'failed';
      const note = document.createElement('p');
      note.className = 'chat-failed';
      note.textContent = failure(err.code);
      li.append(note);
    }
  });
  client.addEventListener('chat-message', (e) => {
    const m = e.detail;
    const li = line(m.userName || 'Participant', m.text, m.sentAt, false);
    li.dataset.id = m.id;
    if (panel.hidden) {
      setUnread(count + 1);
      // The log is hidden: say it here (the log itself is the live region while open).
      announce.textContent = `New message from ${m.userName || 'a participant'}`;
    }
  });
  setUnread(0);
  return {
    enable(on) {
      toggle.disabled = !on;
      input.disabled = !on;
      form.querySelector('button').disabled = !on;
    },
  };
}
