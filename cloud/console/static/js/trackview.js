// Map and playback of one device's track over a chosen range: stretches without a fix dashed,
// stops with their durations, events marked, play/pause, speed, follow mode and trip totals.

import { withQuery } from './api.js';
import { explain, fill, formatTime, h, notice, num, unavailable } from './dom.js';
import { ENDPOINTS } from './endpoints.js';
import { formatDuration, stretches, totals } from './geo.js';
import { MapView } from './map.js';
import { items, normEvent, normStop, normTrack, normTrip } from './model.js';
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
  // an event's link (?at=) opens six hours either side of it; otherwise the last 24 hours
  const end = Number(params.get('to')) || (at ? at + 6 * 3600e3 : Date.now());
  const start = Number(params.get('from')) || (at ? at - 6 * 3600e3 : end - 24 * 3600e3);
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
  const template = '/devices/{device_id}/track';
  const trackQuery = rangeQuery(api, template, range);
  if (api.spec.queryParams('get', template).has('events')) trackQuery.events = true;
  let track;
  try {
    track = normTrack(await api.get(withQuery(trackPath, trackQuery)));
  } catch (error) {
    fill(side, unavailable('Track', error));
    return;
  }
  const events = trackQuery.events ? track.events : await loadEvents(api, deviceId, start, end);
  const [trips, stopsAnswer] = await Promise.all([loadTrips(api, deviceId, range), loadStops(api, deviceId, range)]);
  const stops = stopsAnswer.stops ?? [];
  const parts = stretches(track.points, NO_FIX_GAP_S);
  for (const gap of track.noFix) {
    const covered = parts.some((q) => q.kind === 'nofix' && q.points[0].t <= gap.start && q.points[1].t >= gap.end);
    if (!covered) parts.push(...noFixPart(track.points, gap));
  }
  map.setTrack({ stretches: parts, stops, events });
  readout.dataset.noFix = String(track.noFix.length + parts.filter((p) => p.kind === 'nofix').length);

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
    map.setCursor(p, playback.playing);  // the whole track stays in view until playback starts
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

  side.append(tripsPanel(trips, track.points), stopsPanel(stops, stopsAnswer.error));
}

/** The range query for a documented operation: whichever of from/to, start/end, since/until it names. */
function rangeQuery(api, template, range) {
  const names = api.spec.queryParams('get', template);
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
  if (!api.has('get', ENDPOINTS.events)) return [];
  const query = { device_id: deviceId, since: new Date(start).toISOString(), until: new Date(end).toISOString(), limit: 500 };
  try {
    return items(await api.get(withQuery(ENDPOINTS.events, query))).map(normEvent);
  } catch (error) {
    notice(`Events not shown on the map: ${explain(error)}`);
    return [];
  }
}

async function loadTrips(api, deviceId, range) {
  const path = ENDPOINTS.trips(deviceId);
  if (!api.has('get', path)) return { error: api.missing('get', path) };
  try {
    const answer = await api.get(withQuery(path, rangeQuery(api, '/devices/{device_id}/trips', range)));
    return { trips: (answer?.trips ?? []).map(normTrip), motionFrom: answer?.motion_from ?? null };
  } catch (error) {
    return { error };
  }
}

async function loadStops(api, deviceId, range) {
  const path = ENDPOINTS.stops(deviceId);
  if (!api.has('get', path)) return { error: api.missing('get', path) };
  try {
    const answer = await api.get(withQuery(path, rangeQuery(api, '/devices/{device_id}/stops', range)));
    return { stops: (answer?.stops ?? []).map(normStop) };
  } catch (error) {
    return { error };
  }
}

function tripsPanel(result, points) {
  const panel = h('section', { class: 'panel', id: 'trips' }, h('h2', {}, 'Trips'));
  if (result.trips) {
    let km = 0, s = 0;
    for (const t of result.trips) { km += t.distanceKm; s += t.durationS; }
    panel.append(h('p', { id: 'trip-totals', dataset: { trips: result.trips.length, km: km.toFixed(3) } },
      `${result.trips.length} ${result.trips.length === 1 ? 'trip' : 'trips'} · ${num(km, 1)} km · ${formatDuration(s)}`,
      result.motionFrom ? h('span', { class: 'muted' }, ` (motion from ${result.motionFrom})`) : null),
    h('table', {}, h('thead', {}, h('tr', {}, ['start', 'end', 'distance', 'duration', 'max speed'].map((x) => h('th', {}, x)))),
      h('tbody', {}, result.trips.map((t) => h('tr', {},
        h('td', {}, formatTime(t.start)), h('td', {}, formatTime(t.end)), h('td', {}, num(t.distanceKm, 2, 'km')),
        h('td', {}, formatDuration(t.durationS)), h('td', {}, num(t.maxSpeedKmh, 0, 'km/h')))))));
    return panel;
  }
  const t = totals(points);
  panel.append(h('p', { class: 'muted' }, `Trips: ${explain(result.error)}`),
    h('p', { id: 'trip-totals' }, `Whole range, from the track: ${num(t.distanceKm, 1)} km · ${formatDuration(t.durationS)}`
      + ` · moving ${formatDuration(t.movingS)} · max ${num(t.maxSpeedKmh, 0)} km/h`));
  return panel;
}

function stopsPanel(stops, error) {
  return h('section', { class: 'panel', id: 'stops' }, h('h2', {}, `Stops (${stops.length})`),
    error ? h('p', { class: 'muted' }, `Stops: ${explain(error)}`) : null,
    stops.length ? h('table', {}, h('tbody', {}, stops.map((s) => h('tr', {},
      h('td', {}, formatTime(s.start)), h('td', {}, formatDuration(s.durationS), s.last ? ' (still there)' : ''),
      h('td', {}, `${num(s.lat, 5)}, ${num(s.lon, 5)}`), h('td', {}, s.poi ?? '')))))
      : error ? null : h('p', { class: 'muted' }, 'No stops in this range.'));
}
