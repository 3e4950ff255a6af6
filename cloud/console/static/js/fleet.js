// Fleet health: counts and lists of devices offline for more than N hours, low on battery,
// behind on data (outbox backlog) or with a poor clock.

import { fill, formatAge, h, num, unavailable } from './dom.js';
import { ENDPOINTS } from './endpoints.js';
import { DEFAULT_LIMITS, fleetHealth } from './health.js';
import { items, normDevice } from './model.js';

const TITLES = {
  offline: (l) => `Offline > ${l.offlineH} h`,
  lowBattery: (l) => `Low battery (< ${l.lowSupplyV} V supply or < ${l.lowBackupV} V backup)`,
  backlog: (l) => `Outbox backlog > ${l.backlog}`,
  clock: () => 'Poor clock (RTC / unknown)',
};

export async function renderFleet(view, ctx) {
  const { api } = ctx;
  if (!api.has('get', ENDPOINTS.devices)) {
    fill(view, h('h1', {}, 'Fleet health'), unavailable('Fleet health', api.missing('get', ENDPOINTS.devices)));
    return;
  }
  const limits = { ...DEFAULT_LIMITS, offlineH: Number(new URLSearchParams(location.hash.split('?')[1]).get('offline_h')) || DEFAULT_LIMITS.offlineH };
  const hours = h('input', { type: 'number', min: 1, name: 'offline_h', value: limits.offlineH, size: 4,
    onchange: (e) => { location.hash = `#/fleet?offline_h=${Number(e.target.value) || DEFAULT_LIMITS.offlineH}`; } });
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  fill(view, h('h1', {}, 'Fleet health'), h('div', { class: 'filters' }, h('label', {}, 'offline after (hours)', hours)), body);
  let devices;
  try {
    devices = items(await api.get(ENDPOINTS.devices), 'devices').map(normDevice);
  } catch (error) {
    fill(body, unavailable('Devices', error));
    return;
  }
  const health = fleetHealth(devices, limits);
  fill(body,
    h('div', { class: 'counts', id: 'fleet-counts' }, h('div', { class: 'count' }, h('b', {}, devices.length), 'devices'),
      Object.keys(TITLES).map((k) => h('div', { class: `count${health[k].length ? ' bad' : ''}`, dataset: { health: k } },
        h('b', {}, health[k].length), TITLES[k](limits)))),
    Object.keys(TITLES).map((k) => h('section', { class: 'panel', id: `fleet-${k}` }, h('h2', {}, TITLES[k](limits)),
      health[k].length ? deviceTable(health[k]) : h('p', { class: 'muted' }, 'None.'))),
    h('section', { class: 'panel', id: 'fleet-all' }, h('h2', {}, 'All devices'), deviceTable(devices)));
}

function deviceTable(devices) {
  return h('table', {}, h('thead', {}, h('tr', {}, ['device', 'last heard', 'power', 'supply', 'backup', 'backlog', 'clock']
    .map((t) => h('th', {}, t)))),
  h('tbody', {}, devices.map((d) => h('tr', { dataset: { device: d.id } },
    h('td', {}, h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)),
    h('td', {}, formatAge(d.lastReceivedAt ?? d.lastMessageAt)),
    h('td', {}, d.powerState ?? '—'), h('td', {}, num(d.supplyV, 2, 'V')), h('td', {}, num(d.backupV, 2, 'V')),
    h('td', {}, d.queueDepth ?? '—'), h('td', {}, d.clockQuality ?? '—')))));
}
