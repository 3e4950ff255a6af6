// Small DOM helpers: element construction without innerHTML (API text is never parsed as HTML).

/** h('td', {class: 'x', onclick: f}, 'text', child, ...) -> an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A panel that says why it has no content (missing endpoint, refused, failed). */
export function unavailable(title, error) {
  return h('section', { class: 'panel unavailable', dataset: { unavailable: title } },
    h('h2', {}, title), h('p', {}, explain(error)));
}

/** One sentence for an error a panel met. */
export function explain(error) {
  if (!error) return 'not available';
  if (error.name === 'MissingEndpoint' || error.constructor?.name === 'MissingEndpoint') {
    return `Not available: ${error.message}.`;
  }
  if (error.status === 403) return 'Your role may not see this.';
  if (error.status === 404) return 'Not found.';
  return `Could not load: ${error.message}`;
}

export function notice(text, kind = 'info') {
  const el = document.getElementById('notice');
  if (!el) return;
  if (!text) { el.hidden = true; return; }
  el.hidden = false;
  el.className = kind;
  el.textContent = text;
}

/** A time for people: local date and time to the second. */
export function formatTime(ms) {
  if (ms == null || Number.isNaN(ms)) return '—';
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "3 min ago", "2 h 10 min ago", "4 d 2 h ago". */
export function formatAge(ms, now = Date.now()) {
  if (ms == null || Number.isNaN(ms)) return '—';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ago`;
  const hours = Math.floor(min / 60);
  if (hours < 48) return `${hours} h ${min % 60} min ago`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h ago`;
}

export function parseTime(value) {
  if (value == null) return null;
  if (typeof value === 'number') return value;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

export function num(value, digits = 1, unit = '') {
  if (value == null || Number.isNaN(Number(value))) return '—';
  return `${Number(value).toFixed(digits)}${unit ? ' ' + unit : ''}`;
}
