// The call page's error display (`/call/:sessionId`, web/call.js): for each error code a
// title, a message and a hint, in plain words, shown in `#errors` (one banner per code).

const $ = (id) => document.getElementById(id);

/** The seed's error display: category title, message, hint, by code. */
const FRIENDLY = {
  MEDIA_PERMISSION_DENIED: ['Camera or microphone blocked', 'We could not use your camera or microphone.',
    'Allow camera and microphone for this site in your browser settings, then reload the page. You can still hear and see the other participant.'],
  MEDIA_UNAVAILABLE: ['No camera or microphone', 'No camera or microphone could be started.',
    'Check that a device is connected and not used by another app. You can still hear and see the other participant.'],
  SCREEN_SHARE_FAILED: ['Screen sharing failed', 'Your screen could not be shared.', 'Try again, and pick a screen or window to share.'],
  NETWORK_ERROR: ['Network problem', 'The connection to the call service was lost.', 'Check your internet connection. We keep trying to reconnect.'],
  RECONNECT_EXHAUSTED: ['Network problem', 'We could not reconnect to the call service.', 'Check your internet connection and reload the page.'],
  WEBRTC_FAILED: ['Video connection problem', 'The video connection with the other participant failed.',
    'We are trying again. A firewall or VPN may block video calls; try another network if it persists.'],
  NODE_DRAINING: ['Reconnecting', 'The call server is restarting.', 'We are moving you to another server; the call resumes by itself.'],
  CLUSTER_UNAVAILABLE: ['Reconnecting', 'The call service is reconnecting.', 'Please wait a moment.'],
  UNAUTHORIZED: ['Please sign in again', 'Your sign-in is missing or has expired.', 'Go back to the platform and open the call again.'],
  INVALID_SESSION_ID: ['Session problem', 'This call link is not valid.', 'Open the call from your session page on the platform.'],
  SESSION_NOT_FOUND: ['Session problem', 'This session could not be found.', 'Open the call from your session page on the platform.'],
  FORBIDDEN: ['Session problem', 'You are not a participant of this session.', 'Sign in with the account that booked this session.'],
  SESSION_CLOSED: ['Session problem', 'This session has been cancelled or has already ended.', 'Book a new session on the platform.'],
  PAYMENT_REQUIRED: ['Payment required', 'Payment for this session has not been confirmed yet.',
    'Complete the payment on the platform; you can join as soon as it is confirmed.'],
  ROOM_FULL: ['Call is full', 'This call already has all its participants.', 'If you joined from another device, close it there first.'],
  ROOM_CLOSED: ['Call closed', 'This call was closed by an operator.', 'Contact support if this is unexpected.'],
  KICKED: ['Disconnected', 'You were disconnected by an operator.', 'Contact support if this is unexpected.'],
  SESSION_REPLACED: ['Joined elsewhere', 'You joined this call from another window or device.', 'Continue the call there, or reload this page to move it here.'],
  RATE_LIMITED: ['Please wait', 'Too many attempts in a short time.', 'Wait a moment and reload the page.'],
  CONNECT_RATE_LIMITED: ['Reconnecting', 'Many people are connecting at once.', 'We keep trying; the call resumes by itself.'],
  CONNECTION_LIMIT: ['Service busy', 'The call service is at capacity right now.', 'Please try again in a minute.'],
  ORIGIN_NOT_ALLOWED: ['Not allowed', 'This page is not allowed to connect to the call service.', 'Open the call from the platform.'],
  STORE_UNAVAILABLE: ['Service problem', 'The service is temporarily unavailable.', 'Please try again in a minute.'],
  INTERNAL: ['Service problem', 'Something went wrong on our side.', 'Please try again; quote the request id to support if it persists.'],
};

export function friendly(code, details = {}, message = '') {
  if (code === 'OUTSIDE_TIME_WINDOW') {
    const m = details.minutesUntilSession;
    if (m > 0) {
      const when = m >= 120 ? `${Math.round(m / 60)} hours` : `${m} minute${m === 1 ? '' : 's'}`;
      return ['Too early to join', `Your session starts in ${when}.`, 'The call opens shortly before the session starts. Please come back then.'];
    }
    return ['Session time is over', 'The time for this session has passed.', 'Book a new session on the platform.'];
  }
  return FRIENDLY[code] || ['Something went wrong', message || code, ''];
}

const shownErrors = new Map();
/** Shows (or updates) the banner of `code`. */
export function showError(code, details = {}, message = '', requestId = null) {
  const [title, text, hint] = friendly(code, details, message);
  let el = shownErrors.get(code);
  if (!el) {
    el = document.createElement('div');
    el.className = 'error';
    el.setAttribute('role', 'alert');
    el.dataset.code = code;
    $('errors').append(el);
    shownErrors.set(code, el);
  }
  el.replaceChildren();
  const h = document.createElement('h2');
  h.textContent = title;
  const p = document.createElement('p');
  p.textContent = text;
  el.append(h, p);
  if (hint || requestId) {
    const q = document.createElement('p');
    q.className = 'hint';
    q.textContent = hint + (requestId ? ` (request ${requestId})` : '');
    el.append(q);
  }
}
/** Removes the banner of `code`. */
export function clearError(code) {
  const el = shownErrors.get(code);
  if (el) el.remove();
  shownErrors.delete(code);
}
