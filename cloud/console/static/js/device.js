// The device page: latest state, freshness, versions, the 90-day energy forecast, open events,
// recent commands with their acknowledgements, and sending a command where the role allows it.

import { withQuery } from './api.js';
import { lineChart } from './chart.js';
import { explain, fill, formatAge, formatTime, h, notice, num, unavailable } from './dom.js';
import { ENDPOINTS } from './endpoints.js';
import { forecastSeries } from './forecast.js';
import { evidenceText } from './inbox.js';
import { can, items, normDevice, normEvent } from './model.js';

export const STALE_H = 24;

export async function renderDevice(view, ctx, deviceId) {
  const { api, role } = ctx;
  fill(view, h('h1', {}, `Device ${deviceId}`), h('p', { class: 'muted' }, 'Loading…'));
  let device;
  try {
    device = normDevice(await api.get(ENDPOINTS.device(deviceId)));
  } catch (error) {
    fill(view, h('h1', {}, `Device ${deviceId}`), unavailable('Device', error));
    return;
  }
  const links = h('p', {}, can(role, 'track')
    ? h('a', { href: `#/track/${encodeURIComponent(deviceId)}`, id: 'open-track' }, 'Map and playback →') : null);
  const grid = h('div', { class: 'grid2' }, statePanel(device), forecastPanel(device));
  const lower = h('div', { class: 'grid2' });
  fill(view, h('h1', {}, `Device ${deviceId}`), links, grid, lower);
  const [events, commands] = await Promise.all([eventsPanel(api, deviceId), commandsPanel(ctx, deviceId)]);
  lower.append(events, commands);
}

function freshness(ms) {
  if (ms == null) return h('span', { class: 'stale' }, 'never');
  const stale = Date.now() - ms > STALE_H * 3600e3;
  return h('span', { class: stale ? 'stale' : 'fresh' }, formatAge(ms), ` (${formatTime(ms)})`);
}

function statePanel(d) {
  const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  return h('section', { class: 'panel', id: 'device-state' }, h('h2', {}, 'Latest state'),
    h('dl', { class: 'kv' },
      row('last message', freshness(d.lastMessageAt)),
      row('last received', freshness(d.lastReceivedAt)),
      row('position', d.lat == null ? '—' : `${num(d.lat, 5)}, ${num(d.lon, 5)}`),
      row('position age', freshness(d.lastPositionAt)),
      row('speed', num(d.speed, 0, 'km/h')),
      row('ignition', d.ignition == null ? '—' : d.ignition ? 'on' : 'off'),
      row('power state', d.powerState ?? '—'),
      row('supply', num(d.supplyV, 2, 'V')),
      row('backup battery', num(d.backupV, 2, 'V')),
      row('outbox backlog', d.queueDepth == null ? '—' : `${d.queueDepth} messages`),
      row('clock quality', d.clockQuality ?? '—'),
      row('firmware', d.firmware ?? '—'),
      row('config version', d.configVersion ?? '—'),
      row('status at', formatTime(d.statusAt))));
}

function forecastPanel(d) {
  const points = forecastSeries(d.forecastDays);
  const panel = h('section', { class: 'panel', id: 'forecast' }, h('h2', {}, '90-day energy forecast'));
  if (!points) {
    panel.append(h('p', { class: 'muted' }, 'The device has not reported an energy forecast yet.'));
    return panel;
  }
  panel.append(lineChart({
    id: 'forecast-chart', xMax: 90, yMax: 100, xLabel: 'days from the last status', yLabel: 'budget left %',
    series: [{ points, label: 'forecast' }], markers: [{ x: 90, label: '90 d' }],
  }));
  const verdict = d.forecastDays >= 90 ? h('span', { class: 'fresh' }, 'lasts the 90 days')
    : h('span', { class: 'stale' }, `runs out after ${num(d.forecastDays, 0)} days`);
  panel.append(h('p', {}, `The plan lasts ${num(d.forecastDays, 1)} days`,
    d.avgCurrentMa != null ? ` at ${num(d.avgCurrentMa, 2)} mA average` : '', ': ', verdict, '.'));
  return panel;
}

async function eventsPanel(api, deviceId) {
  const path = api.has('get', ENDPOINTS.deviceEvents(deviceId)) ? ENDPOINTS.deviceEvents(deviceId)
    : withQuery(ENDPOINTS.events, { device_id: deviceId });
  try {
    const list = items(await api.get(path), 'events').map(normEvent).filter((e) => e.state !== 'resolved' && e.state !== 'dismissed');
    return h('section', { class: 'panel', id: 'device-events' }, h('h2', {}, `Open events (${list.length})`),
      list.length ? h('table', {}, h('tbody', {}, list.map((e) => h('tr', {},
        h('td', {}, h('span', { class: `sev ${e.severity}` }, e.severity)), h('td', {}, e.detector),
        h('td', {}, formatTime(e.t), h('div', { class: 'muted' }, formatAge(e.t))),
        h('td', {}, h('span', { class: `state ${e.state}` }, e.state)),
        h('td', {}, h('pre', { class: 'evidence' }, evidenceText(e.evidence)))))))
        : h('p', { class: 'muted' }, 'No open events.'));
  } catch (error) {
    return unavailable('Open events', error);
  }
}

const COMMANDS = [
  { kind: 'request_position', label: 'Request position', fields: [] },
  { kind: 'set_geofence', label: 'Set geofence', fields: [['lat_deg', 'latitude'], ['lon_deg', 'longitude'], ['radius_m', 'radius m']] },
];

async function commandsPanel(ctx, deviceId) {
  const { api, role } = ctx;
  const path = ENDPOINTS.commands(deviceId);
  const panel = h('section', { class: 'panel', id: 'device-commands' }, h('h2', {}, 'Commands'));
  const list = h('div', {});
  panel.append(list);
  async function load() {
    if (!api.has('get', path)) { fill(list, h('p', { class: 'muted' }, explain(api.missing('get', path)))); return; }
    try {
      const rows = items(await api.get(path), 'commands');
      fill(list, rows.length ? h('table', {}, h('thead', {}, h('tr', {}, ['sent', 'command', 'state', 'acknowledged', 'detail'].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows.slice(0, 20).map((c) => h('tr', { dataset: { command: c.command_id ?? '' } },
          h('td', {}, formatTime(Date.parse(c.created_at))), h('td', {}, c.kind ?? c.action ?? ''),
          h('td', {}, c.state ?? ''), h('td', {}, c.acked_at ? formatTime(Date.parse(c.acked_at)) : '—'),
          h('td', {}, c.ack_detail ?? c.detail ?? '')))))
        : h('p', { class: 'muted' }, 'No commands sent yet.'));
    } catch (error) {
      fill(list, h('p', { class: 'muted' }, explain(error)));
    }
  }
  await load();
  if (can(role, 'commands') && api.has('post', path)) {
    for (const c of COMMANDS) {
      const inputs = c.fields.map(([name, label]) => h('label', {}, label, h('input', { name, type: 'number', step: 'any', size: 10 })));
      const send = async () => {
        const body = { kind: c.kind };
        for (const input of inputs.map((l) => l.querySelector('input'))) body[input.name] = Number(input.value);
        try {
          await api.post(path, body);
          notice(`${c.label}: sent to ${deviceId}.`);
          await load();
        } catch (error) {
          notice(explain(error), 'error');
        }
      };
      panel.append(h('div', { class: 'filters' }, inputs, h('button', { dataset: { command: c.kind }, onclick: send }, c.label)));
    }
  }
  return panel;
}
