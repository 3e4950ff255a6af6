// The audit log: who read which device's location, over what range, and whether it was allowed.

import { withQuery } from './api.js';
import { fill, formatTime, h, unavailable } from './dom.js';
import { ENDPOINTS } from './endpoints.js';
import { items } from './model.js';

export async function renderAudit(view, ctx) {
  const { api } = ctx;
  if (!api.has('get', ENDPOINTS.audit)) {
    fill(view, h('h1', {}, 'Audit log'), unavailable('Audit log', api.missing('get', ENDPOINTS.audit)));
    return;
  }
  const device = h('input', { name: 'device_id', placeholder: 'device', size: 14 });
  const body = h('div', {});
  const load = async () => {
    try {
      const rows = items(await api.get(withQuery(ENDPOINTS.audit, { device_id: device.value })), 'entries', 'audit');
      fill(body, h('table', { id: 'audit' }, h('thead', {}, h('tr', {}, ['time', 'user', 'role', 'action', 'device', 'range', 'allowed', 'status']
        .map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.map((r) => h('tr', { class: r.allowed ? '' : 'refused' },
        h('td', {}, formatTime(Date.parse(r.time))), h('td', {}, r.user_name ?? ''), h('td', {}, r.role ?? ''),
        h('td', {}, r.action ?? ''), h('td', {}, r.device_id ?? ''),
        h('td', {}, r.range_from ? `${formatTime(Date.parse(r.range_from))} – ${formatTime(Date.parse(r.range_to))}` : ''),
        h('td', {}, r.allowed ? 'yes' : 'REFUSED'), h('td', {}, r.status ?? ''))))));
    } catch (error) {
      fill(body, unavailable('Audit log', error));
    }
  };
  fill(view, h('h1', {}, 'Audit log'), h('div', { class: 'filters' }, h('label', {}, 'device', device), h('button', { onclick: load }, 'Show')),
    h('section', { class: 'panel' }, body));
  await load();
}
