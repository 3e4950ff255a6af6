// Map and playback of one device's track over a chosen range: stretches without a fix dashed,
// stops with their durations, events marked, play/pause, speed, follow mode and trip totals.

import { withQuery } from './api.js';
import { explain, fill, formatTime, h, notice, num, unavailable } from './dom.js';
import { ENDPOINTS } from './endpoints.js';
import { formatDuration, stretches, totals } from './geo.js';
import { MapView } from './map.js';
import { items, normEvent, normTrack } from './model.js';
import { Playback, SPEEDS } from './playback.js';

export const NO_FIX_GAP_S = 120;

function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
}

export async function renderTrack(view, ctx, deviceId, params) {
  const { api } = ctx;
  const trackPath = ENDPOINTS.track(deviceId);
  if (!api.has('get', trackPath)) {
    fill(view, h('h1', {}, `Track of ${deviceId}`), unavailable('Map and playback', api.missing('get', trackPath)));
    return;
  }
  const at = Number(params.get('at')) || null;
  const end = Number(params.get('to')) || (at ? at + 6 * 3600e3 : Date.now());
  const start = Number(params.get('from')) || end - 24 * 3600e3;
  const from = h('input', { type: 'datetime-local', name: 'from', value: localInput(start) });
  const to = h('input', { type: 'datetime-local', name: 'to', value: localInput(end) });
  const apply = () => {
    location.hash = `#/track/${encodeURIComponent(deviceId)}?from=${Date.parse(from.value)}&to=${Date.parse(to.value)}`;
  };
  const canvas = h('canvas', { id: 'map' });
  const controls = h('div', { class: 'playback', id: 'playback' });
  const readout = h('div', { id: 'readout', class: 'muted' });
  const side = h('div', { class: 'grid2' });
  fill(view,
    h('h1', {}, 'Track of ', h('a', { href: `#/device/${encodeURIComponent(deviceId)}` }, deviceId)),
    h('div', { class: 'filters' }, h('label', {}, 'from', from), h('label', {}, 'to', to), h('button', { onclick: apply }, 'Show')),
    h('div', { id: 'map-wrap' }, canvas), controls, readout,
    h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'line-track' }), 'track'),
      h('span', {}, h('i', { class: 'line-nofix' }), 'no GNSS fix'),
      h('span', {}, 'P stop (duration)'), h('span', {}, '▲ event')),
    side);

  const map = new MapView(canvas, { tileUrl: ctx.config.tile_url || '', attribution: ctx.config.tile_attribution || '' });
  const range = { from: new Date(start).toISOString(), to: new Date(end).toISOString() };
  let track;
  try {
    track = normTrack(await api.get(withQuery(trackPath, rangeQuery(api, 'get', trackPath, range))));
  } catch (error) {
    fill(side, unavailable('Track', error));
    return;
  }
  const events = await loadEvents(api, deviceId, start, end);
  let stops = track.stops;
  if (!stops.length) stops = await loadStops(api, deviceId, range);
  const parts = stretches(track.points, NO_FIX_GAP_S);
  for (const gap of track.noFix) parts.push(...noFixPart(track.points, gap));
  map.setTrack({ stretches: parts, stops, events });

  const playback = new Playback(track.points, { maxGapS: NO_FIX_GAP_S, onFrame: (p) => frame(p) });
  const playButton = h('button', { id: 'play', onclick: () => { if (playback.playing) playback.pause(); else playback.play(); sync(); } }, 'Play');
  const speed = h('select', { id: 'speed', onchange: (e) => { playback.speed = Number(e.target.value); } },
    SPEEDS.map((s) => h('option', { value: s, selected: s === playback.speed }, `${s}×`)));
  const follow = h('input', { type: 'checkbox', id: 'follow', checked: true, onchange: (e) => { map.follow = e.target.checked; } });
  map.onUserPan = () => { map.follow = false; follow.checked = false; };
  const slider = h('input', { type: 'range', id: 'scrub', min: playback.start, max: playback.end, step: 1000, value: playback.start,
    oninput: (e) => playback.seek(Number(e.target.value)) });
  fill(controls, playButton, h('label', {}, 'speed ', speed), h('label', {}, follow, ' follow'), slider);

  function sync() { playButton.textContent = playback.playing ? 'Pause' : 'Play'; }
  function frame(p) {
    if (!p) return;
    map.setCursor(p);
    slider.value = String(p.t);
    readout.dataset.lat = String(p.lat);
    readout.dataset.lon = String(p.lon);
    readout.dataset.t = String(p.t);
    readout.dataset.atEnd = String(playback.atEnd);
    readout.textContent = `${formatTime(p.t)} · ${num(p.lat, 5)}, ${num(p.lon, 5)} · ${num(p.speed, 0, 'km/h')}${p.nofix ? ' · no GNSS fix' : ''}`;
    sync();
  }
  if (track.points.length) playback.seek(at ?? playback.start);
  else readout.textContent = 'No positions in this range.';
  ctx.onLeave(() => playback.pause());

  side.append(await tripsPanel(api, deviceId, range, track.points), stopsPanel(stops));
}

/** The range query for a documented operation: whichever of from/to, start/end it names. */
function rangeQuery(api, method, template, range) {
  const names = api.spec.queryParams(method, template.replace(/\/devices\/[^/]+/, '/devices/{device_id}'));
  if (names.has('start')) return { start: range.from, end: range.to };
  if (names.has('since')) return { since: range.from, until: range.to };
  return { from: range.from, to: range.to };
}

function noFixPart(points, gap) {
  const before = points.filter((p) => p.t <= gap.start).at(-1);
  const after = points.find((p) => p.t >= gap.end);
  return before && after ? [{ kind: 'nofix', points: [before, after], seconds: (gap.end - gap.start) / 1000 }] : [];
}

async function loadEvents(api, deviceId, start, end) {
  const path = api.has('get', ENDPOINTS.deviceEvents(deviceId)) ? ENDPOINTS.deviceEvents(deviceId)
    : api.has('get', ENDPOINTS.events) ? withQuery(ENDPOINTS.events, { device_id: deviceId }) : null;
  if (!path) return [];
  try {
    return items(await api.get(path), 'events').map(normEvent).filter((e) => e.t >= start && e.t <= end);
  } catch (error) {
    notice(`Events not shown on the map: ${explain(error)}`);
    return [];
  }
}

async function loadStops(api, deviceId, range) {
  const path = ENDPOINTS.stops(deviceId);
  if (!api.has('get', path)) return [];
  try {
    return items(await api.get(withQuery(path, rangeQuery(api, 'get', path, range))), 'stops', 'features').map((s) => {
      const g = s.geometry?.coordinates;
      const p = s.properties ?? s;
      const startMs = Date.parse(p.start ?? p.started_at), endMs = Date.parse(p.end ?? p.ended_at);
      return { lat: g ? g[1] : p.lat_deg, lon: g ? g[0] : p.lon_deg, start: startMs, end: endMs,
        durationS: p.duration_s ?? (endMs - startMs) / 1000 };
    });
  } catch {
    return [];
  }
}

async function tripsPanel(api, deviceId, range, points) {
  const panel = h('section', { class: 'panel', id: 'trips' }, h('h2', {}, 'Trips'));
  const path = ENDPOINTS.trips(deviceId);
  if (api.has('get', path)) {
    try {
      const trips = items(await api.get(withQuery(path, rangeQuery(api, 'get', path, range))), 'trips', 'features')
        .map((t) => t.properties ?? t);
      let km = 0, s = 0;
      for (const t of trips) { km += t.distance_km ?? 0; s += t.duration_s ?? 0; }
      panel.append(h('p', { id: 'trip-totals' }, `${trips.length} trips · ${num(km, 1)} km · ${formatDuration(s)}`),
        h('table', {}, h('thead', {}, h('tr', {}, ['start', 'end', 'distance', 'duration', 'max speed'].map((x) => h('th', {}, x)))),
          h('tbody', {}, trips.map((t) => h('tr', {},
            h('td', {}, formatTime(Date.parse(t.start ?? t.started_at))), h('td', {}, formatTime(Date.parse(t.end ?? t.ended_at))),
            h('td', {}, num(t.distance_km, 2, 'km')), h('td', {}, formatDuration(t.duration_s ?? 0)),
            h('td', {}, num(t.max_speed_kmh, 0, 'km/h')))))));
      return panel;
    } catch (error) {
      panel.append(h('p', { class: 'muted' }, `Trips: ${explain(error)}`));
    }
  }
  const t = totals(points);
  panel.append(h('p', { id: 'trip-totals' }, `Whole range (from the track): ${num(t.distanceKm, 1)} km · ${formatDuration(t.durationS)}`
    + ` · moving ${formatDuration(t.movingS)} · max ${num(t.maxSpeedKmh, 0)} km/h`));
  return panel;
}

function stopsPanel(stops) {
  return h('section', { class: 'panel', id: 'stops' }, h('h2', {}, `Stops (${stops.length})`),
    stops.length ? h('table', {}, h('tbody', {}, stops.map((s) => h('tr', {},
      h('td', {}, formatTime(s.start)), h('td', {}, formatDuration(s.durationS)),
      h('td', {}, `${num(s.lat, 5)}, ${num(s.lon, 5)}`)))))
      : h('p', { class: 'muted' }, 'No stops in this range.'));
}
