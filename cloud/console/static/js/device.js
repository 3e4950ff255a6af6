// The device page: latest state, freshness, versions, the 90-day energy forecast, open events,
// recent commands with their acknowledgements, and sending a command where the role allows it.

import { lineChart } from './chart.js';
import { explain, fill, formatAge, formatTime, h, notice, num, unavailable } from './dom.js';
import { ENDPOINTS } from './endpoints.js';
import { forecastSeries } from './forecast.js';
import { can, canSend, items, normDevice } from './model.js';

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
  const lower = h('div', { class: 'grid2' }, eventsPanel(device));
  fill(view, h('h1', {}, `Device ${deviceId}`, device.vin ? h('span', { class: 'muted' }, ` · VIN ${device.vin}`) : null),
    links, grid, lower);
  lower.append(await commandsPanel(ctx, deviceId));
}

function freshness(ms) {
  if (ms == null) return h('span', { class: 'stale' }, 'never');
  const stale = Date.now() - ms > STALE_H * 3600e3;
  return h('span', { class: stale ? 'stale' : 'fresh' }, formatAge(ms), ` (${formatTime(ms)})`);
}

function statePanel(d) {
  const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  const ignition = d.ignition == null ? 'unknown' : d.ignition ? 'on' : 'off';
  return h('section', { class: 'panel', id: 'device-state' }, h('h2', {}, 'Latest state'),
    h('dl', { class: 'kv' },
      row('online', d.online == null ? '—' : d.online ? h('span', { class: 'fresh' }, 'yes') : h('span', { class: 'stale' }, 'no')),
      row('last heard', freshness(d.lastSeenAt ?? d.lastMessageAt)),
      row('position', d.lat == null ? '— (none, or outside your window)' : `${num(d.lat, 5)}, ${num(d.lon, 5)}`),
      row('position age', d.lat == null ? '—' : freshness(d.lastPositionAt)),
      row('speed', num(d.speed, 0, 'km/h')),
      row('ignition', d.ignitionSource && d.ignitionSource !== 'unknown' ? `${ignition} (from ${d.ignitionSource.replace('_', ' ')})` : ignition),
      row('power state', d.powerState ?? '—'),
      row('supply', num(d.supplyV, 2, 'V')),
      row('backup battery', num(d.backupV, 2, 'V')),
      row('outbox backlog', d.queueDepth == null ? '—' : `${d.queueDepth} messages`),
      row('clock', d.clockQuality ?? '—'),
      row('firmware', d.firmware ?? '—'),
      row('config version', d.configVersion ?? '—'),
      row('status at', d.statusAt == null ? '—' : freshness(d.statusAt)),
      row('monitoring', d.monitoring || '—'),
      row('starter interrupt', interruptText(d.raw.starter_interrupt))));
}

// The starter interrupt as the device last reported it (GET /devices/{id} starter_interrupt, docs/actuators.md).
function interruptText(si) {
  if (!si || si.state === 'UNKNOWN') return '— (never reported)';
  const since = si.since ? ` since ${formatTime(Date.parse(si.since))}` : '';
  const cmd = si.last_command;
  const last = cmd ? ` · last command ${cmd.action.replace(/_/g, ' ')} by ${cmd.created_by ?? '?'} (${cmd.state})` : '';
  return h('span', { class: si.state === 'ENGAGED' ? 'stale' : '' }, `${si.state}${since}${last}`);
}

function forecastPanel(d) {
  const points = forecastSeries(d.forecastDays);
  const panel = h('section', { class: 'panel', id: 'forecast' }, h('h2', {}, '90-day energy forecast'));
  if (!points) {
    panel.append(h('p', { class: 'muted' }, 'The device has not reported an energy forecast yet.'));
    return panel;
  }
  panel.append(lineChart({
    id: 'forecast-chart', xMax: 90, yMax: 100, xLabel: 'days from the last status', yLabel: 'energy budget left, %',
    series: [{ points, label: 'forecast' }], markers: [{ x: 90, label: '90 d' }],
  }));
  const verdict = d.forecastDays >= 90 ? h('span', { class: 'fresh' }, 'lasts the 90 days')
    : h('span', { class: 'stale' }, `${num(90 - d.forecastDays, 1)} days short of 90`);
  panel.append(h('p', { id: 'forecast-verdict' }, `Parked from its last status, the device's plan lasts ${num(d.forecastDays, 1)} days: `,
    verdict, '.'));
  return panel;
}

function eventsPanel(d) {
  const list = d.raw.open_events || [];
  return h('section', { class: 'panel', id: 'device-events' }, h('h2', {}, `Open events (${list.length})`),
    list.length ? h('table', {}, h('tbody', {}, list.map((e) => h('tr', { dataset: { event: e.event_id } },
      h('td', {}, h('span', { class: `sev ${e.severity}` }, e.severity)),
      h('td', {}, e.detector ?? '', e.condition ? h('div', { class: 'muted' }, e.condition) : null),
      h('td', {}, formatTime(Date.parse(e.raised_at)), h('div', { class: 'muted' }, formatAge(Date.parse(e.raised_at)))),
      h('td', {}, h('span', { class: `state ${e.state}` }, e.state))))))
      : h('p', { class: 'muted' }, 'No open events.'));
}

// The commands the page offers, with their parameters: [name, label, input type, default].
// The starter interrupt never disables a moving or running car (docs/actuators.md); arming it asks
// for confirmation. Actuator commands need a reason, which the API stores and audits.
const COMMANDS = [
  { action: 'request_position', label: 'Request position', fields: [] },
  { action: 'set_geofence', label: 'Set geofence',
    fields: [['geofence_id', 'geofence id', 'number', '1'], ['lat_deg', 'latitude', 'number', ''],
      ['lon_deg', 'longitude', 'number', ''], ['radius_m', 'radius m', 'number', '500']] },
  { action: 'payment_reminder', label: 'Payment reminder',
    fields: [['due_date', 'due date', 'date', ''], ['pattern', 'pattern', ['gentle', 'firm', 'final'], 'gentle'],
      ['reason', 'reason', 'text', '']] },
  { action: 'arm_starter_interrupt', label: 'Arm starter interrupt', confirm: true, fields: [['reason', 'reason', 'text', '']] },
  { action: 'release_starter_interrupt', label: 'Release starter interrupt', fields: [['reason', 'reason', 'text', '']] },
];

function field([name, label, type, value]) {
  const input = Array.isArray(type)
    ? h('select', { name }, type.map((v) => h('option', { value: v, selected: v === value }, v)))
    : h('input', { name, type, value, size: type === 'text' ? 24 : 10, step: type === 'number' ? 'any' : null });
  input.dataset.kind = Array.isArray(type) ? 'text' : type;
  return h('label', {}, label, input);
}

async function commandsPanel(ctx, deviceId) {
  const { api, role } = ctx;
  const path = ENDPOINTS.commands(deviceId);
  const panel = h('section', { class: 'panel', id: 'device-commands' }, h('h2', {}, 'Recent commands'));
  const list = h('div', {});
  panel.append(list);
  async function load() {
    if (!api.has('get', path)) { fill(list, h('p', { class: 'muted' }, explain(api.missing('get', path)))); return; }
    try {
      const rows = items(await api.get(path));
      fill(list, rows.length ? h('table', {}, h('thead', {}, h('tr', {}, ['created', 'action', 'by', 'state', 'acknowledged', 'detail'].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows.slice(0, 20).map((c) => h('tr', { dataset: { command: c.command_id, phase: c.phase } },
          h('td', {}, formatTime(Date.parse(c.created_at))), h('td', {}, c.action),
          h('td', {}, c.created_by ?? ''), h('td', {}, c.state),
          h('td', {}, c.acked_at ? formatTime(Date.parse(c.acked_at)) : '—'), h('td', {}, c.ack_detail ?? '')))))
        : h('p', { class: 'muted' }, 'No commands sent yet.'));
    } catch (error) {
      fill(list, h('p', { class: 'muted' }, explain(error)));
    }
  }
  await load();
  const offered = COMMANDS.filter((c) => canSend(role, c.action));
  if (!offered.length || !api.has('post', path)) return panel;
  panel.append(h('h2', {}, 'Send a command'));
  for (const c of offered) {
    const inputs = c.fields.map(field);
    const send = async () => {
      const params = {};
      for (const input of inputs.map((l) => l.querySelector('input, select'))) {
        params[input.name] = input.dataset.kind === 'number' ? Number(input.value) : input.value;
      }
      const question = `${c.label} on ${deviceId}? Once the car has been parked for the hold time it cannot be started `
        + 'until the interrupt is released (a moving or running car is never disabled).';
      if (c.confirm && !window.confirm(question)) return;
      try {
        await api.post(path, { action: c.action, params });
        notice(`${c.label}: sent to ${deviceId}.`);
        await load();
      } catch (error) {
        notice(explain(error), 'error');
      }
    };
    panel.append(h('div', { class: 'filters' }, inputs, h('button', { dataset: { command: c.action }, onclick: send }, c.label)));
  }
  return panel;
}
