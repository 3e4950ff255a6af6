// The alert inbox: open events, EMERGENCY first and newest first, refreshed by polling, with
// acknowledge / resolve and a comment where the role may act.

import { applyFilters, choices, countBySeverity, inboxOrder } from './alerts.js';
import { ApiError, withQuery } from './api.js';
import { explain, fill, formatAge, formatTime, h, notice, num, unavailable } from './dom.js';
import { can, items, normEvent } from './model.js';
import { ENDPOINTS } from './endpoints.js';

const POLL_MS = 5000;
const ACTIVE = 'open+acknowledged';
export const STATES = [ACTIVE, 'open', 'acknowledged', 'cleared', 'resolved', 'dismissed'];

export function renderInbox(view, ctx) {
  const { api, role } = ctx;
  if (!api.has('get', ENDPOINTS.events)) {
    fill(view, h('h1', {}, 'Alert inbox'), unavailable('Alert inbox', api.missing('get', ENDPOINTS.events)));
    return;
  }
  const filters = { detector: '', device: '', state: ACTIVE, severity: '' };
  let events = [];
  const counts = h('div', { class: 'counts', id: 'inbox-counts' });
  const filterBar = h('div', { class: 'filters' });
  const table = h('table', { id: 'inbox' });
  const stamp = h('span', { class: 'muted', id: 'inbox-updated' });
  fill(view, h('h1', {}, 'Alert inbox ', stamp), counts, filterBar, h('div', { class: 'panel' }, table));

  const select = (name, label, values) => h('label', {}, label,
    h('select', { name, onchange: (e) => { filters[name] = e.target.value; if (name === 'state') load(); else draw(); } },
      h('option', { value: '' }, 'any'),
      values.map((v) => h('option', { value: v, selected: filters[name] === v }, v))));

  function drawFilters() {
    fill(filterBar,
      select('state', 'state', STATES),
      select('severity', 'severity', ['EMERGENCY', 'ALERT', 'WARNING']),
      select('detector', 'detector', choices(events, 'detector')),
      select('device', 'device', choices(events, 'deviceId')));
  }

  function draw() {
    const shown = inboxOrder(applyFilters(events, { ...filters, state: '' }));
    const c = countBySeverity(shown);
    // the tab's title says it too, for an operator whose inbox is in a background tab
    document.title = c.EMERGENCY ? `(${c.EMERGENCY}) EMERGENCY · lienwatch` : 'lienwatch console';
    fill(counts, Object.entries(c).map(([sev, n]) =>
      h('div', { class: `count${n && sev === 'EMERGENCY' ? ' bad' : ''}` }, h('b', {}, n), sev)));
    const actions = can(role, 'act');
    fill(table,
      h('thead', {}, h('tr', {}, ['severity', 'device', 'detector', 'raised', 'position', 'evidence', 'state',
        actions ? 'action' : null].filter(Boolean).map((t) => h('th', {}, t)))),
      h('tbody', {}, shown.length ? shown.map((e) => row(e, actions))
        : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No events match.'))));
  }

  function row(e, actions) {
    const where = e.lat == null ? h('span', { class: 'muted' }, 'no position')
      : [h('a', { href: `#/track/${encodeURIComponent(e.deviceId)}?at=${e.t}` }, `${num(e.lat, 5)}, ${num(e.lon, 5)}`),
        e.speed != null ? h('div', { class: 'muted' }, num(e.speed, 0, 'km/h')) : null];
    return h('tr', { dataset: { device: e.deviceId, event: e.eventId, severity: e.severity, state: e.state } },
      h('td', {}, h('span', { class: `sev ${e.severity}` }, e.severity)),
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(e.deviceId)}` }, e.deviceId)),
      h('td', {}, e.detector, e.condition ? h('div', { class: 'muted' }, e.condition) : null),
      h('td', {}, formatTime(e.t), h('div', { class: 'muted age' }, formatAge(e.t))),
      h('td', {}, where),
      h('td', {}, e.evidence == null ? h('span', { class: 'muted' }, 'not shown to your role')
        : h('pre', { class: 'evidence' }, evidenceText(e.evidence)), e.detail ? h('div', {}, e.detail) : null),
      h('td', {}, h('span', { class: `state ${e.state}` }, e.state),
        e.updatedBy ? h('div', { class: 'muted' }, `by ${e.updatedBy}`) : null,
        e.note ? h('div', { class: 'muted note' }, `“${e.note}”`) : null),
      actions ? h('td', {}, actionCell(e)) : null);
  }

  function actionCell(e) {
    if (e.state !== 'open' && e.state !== 'acknowledged') return '';
    const comment = h('input', { type: 'text', placeholder: 'comment', name: 'comment', size: 16 });
    const act = async (verb) => {
      try {
        await api.post(ENDPOINTS.eventAction(e.deviceId, e.eventId, verb), { comment: comment.value });
        notice(`${verb === 'acknowledge' ? 'Acknowledged' : 'Resolved'} ${e.detector} on ${e.deviceId}.`);
        await load();
      } catch (error) {
        notice(explain(error), 'error');
      }
    };
    const button = (verb, label, cls) => api.has('post', ENDPOINTS.eventAction(e.deviceId, e.eventId, verb))
      ? h('button', { class: cls, dataset: { action: verb }, onclick: () => act(verb) }, label) : null;
    return h('div', {}, comment, ' ',
      e.state === 'open' ? button('acknowledge', 'Acknowledge', '') : null, ' ',
      button('resolve', 'Resolve', 'secondary'));
  }

  async function load() {
    try {
      const states = filters.state === ACTIVE ? ['open', 'acknowledged'] : [filters.state];
      const pages = await Promise.all(states.map((state) => api.get(withQuery(ENDPOINTS.events, { state, limit: 500 }))));
      events = pages.flatMap((page) => items(page)).map(normEvent);
      stamp.textContent = `updated ${formatTime(Date.now())}`;
      drawFilters();
      draw();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) ctx.logout();
      else notice(explain(error), 'error');
    }
  }

  load();
  const timer = setInterval(() => { if (!document.hidden) load(); }, POLL_MS);
  ctx.onLeave(() => { clearInterval(timer); document.title = 'lienwatch console'; });
}

/** Evidence as short "key: value" lines (numbers rounded for reading). */
export function evidenceText(evidence) {
  return Object.entries(evidence || {})
    .map(([k, v]) => `${k}: ${typeof v === 'number' ? Math.round(v * 100) / 100 : JSON.stringify(v)}`)
    .join('\n');
}
