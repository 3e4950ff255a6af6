// Fleet health: counts and lists of devices offline for more than N hours, low on battery,
// behind on data (outbox backlog) or with a poor clock.

import { withQuery } from './api.js';
import { fill, formatAge, h, num, unavailable } from './dom.js';
import { ENDPOINTS } from './endpoints.js';
import { DEFAULT_LIMITS, fleetHealth } from './health.js';
import { items, normDevice } from './model.js';

export const MAX_DETAILED = 200;  // devices whose latest status is read one by one (the list has no voltages)

const TITLES = {
  offline: (l) => `Offline > ${l.offlineH} h`,
  lowBattery: (l) => `Low battery (supply < ${l.lowSupplyV} V, backup < ${l.lowBackupV} V, or on backup)`,
  backlog: (l) => `Outbox backlog > ${l.backlog} messages`,
  clock: () => 'Poor clock (RTC or unknown)',
};

/** Every page of a list endpoint (keyset cursors), up to `max` items. */
export async function allPages(api, path, max = 2000) {
  const out = [];
  let cursor = null;
  do {
    const page = await api.get(withQuery(path, { limit: 500, cursor }));
    out.push(...items(page));
    cursor = page?.next_cursor ?? null;
  } while (cursor && out.length < max);
  return out;
}

async function details(api, devices) {
  const out = [];
  const queue = devices.slice(0, MAX_DETAILED);
  const worker = async () => {
    while (queue.length) {
      const d = queue.shift();
      try { out.push(normDevice(await api.get(ENDPOINTS.device(d.id)))); } catch { out.push(d); }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return [...out, ...devices.slice(MAX_DETAILED)].sort((a, b) => (a.id < b.id ? -1 : 1));
}

export async function renderFleet(view, ctx) {
  const { api } = ctx;
  if (!api.has('get', ENDPOINTS.devices)) {
    fill(view, h('h1', {}, 'Fleet health'), unavailable('Fleet health', api.missing('get', ENDPOINTS.devices)));
    return;
  }
  const asked = Number(new URLSearchParams(location.hash.split('?')[1] || '').get('offline_h'));
  const limits = { ...DEFAULT_LIMITS, offlineH: asked > 0 ? asked : DEFAULT_LIMITS.offlineH };
  const hours = h('input', { type: 'number', min: 1, name: 'offline_h', value: limits.offlineH, size: 4,
    onchange: (e) => { location.hash = `#/fleet?offline_h=${Number(e.target.value) || DEFAULT_LIMITS.offlineH}`; } });
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  fill(view, h('h1', {}, 'Fleet health'), h('div', { class: 'filters' }, h('label', {}, 'offline after (hours)', hours)), body);
  let devices;
  try {
    devices = await details(api, (await allPages(api, ENDPOINTS.devices)).map(normDevice));
  } catch (error) {
    fill(body, unavailable('Devices', error));
    return;
  }
  const health = fleetHealth(devices, limits);
  const clockKnown = devices.some((d) => d.clockQuality != null);
  const section = (k) => h('section', { class: 'panel', id: `fleet-${k}` }, h('h2', {}, TITLES[k](limits)),
    k === 'clock' && !clockKnown ? h('p', { class: 'muted' }, 'Not available: the API does not report the devices\' clock quality.')
      : health[k].length ? deviceTable(health[k]) : h('p', { class: 'muted' }, 'None.'));
  fill(body,
    h('div', { class: 'counts', id: 'fleet-counts' }, h('div', { class: 'count' }, h('b', {}, devices.length), 'devices'),
      Object.keys(TITLES).map((k) => h('div', { class: `count${health[k].length ? ' bad' : ''}`, dataset: { health: k } },
        h('b', {}, k === 'clock' && !clockKnown ? '—' : health[k].length), TITLES[k](limits)))),
    Object.keys(TITLES).map(section),
    h('section', { class: 'panel', id: 'fleet-all' }, h('h2', {}, 'All devices'), deviceTable(devices)));
}

function deviceTable(devices) {
  return h('table', {}, h('thead', {}, h('tr', {}, ['device', 'last heard', 'power', 'supply', 'backup', 'backlog', 'clock', 'open events']
    .map((t) => h('th', {}, t)))),
  h('tbody', {}, devices.map((d) => h('tr', { dataset: { device: d.id } },
    h('td', {}, h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)),
    h('td', {}, formatAge(d.lastSeenAt ?? d.lastMessageAt)),
    h('td', {}, d.powerState ?? '—'), h('td', {}, num(d.supplyV, 2, 'V')), h('td', {}, num(d.backupV, 2, 'V')),
    h('td', {}, d.queueDepth ?? '—'), h('td', {}, d.clockQuality ?? '—'), h('td', {}, d.openEvents ?? '—')))));
}
