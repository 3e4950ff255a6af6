// Node's own test runner over the console's pure modules (run by tests/console/test_js_units.py).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { applyFilters, inboxOrder } from '../../../cloud/console/static/js/alerts.js';
import { Spec } from '../../../cloud/console/static/js/api.js';
import { forecastSeries } from '../../../cloud/console/static/js/forecast.js';
import { fitBounds, formatDuration, haversineM, metersPerPixel, positionAt, project, scaleBar, stretches, totals, unproject } from '../../../cloud/console/static/js/geo.js';
import { fleetHealth } from '../../../cloud/console/static/js/health.js';
import { normTrack } from '../../../cloud/console/static/js/model.js';

test('project and unproject are inverse and Munich lies where Web Mercator puts it', () => {
  const w = project(48.137, 11.575);
  // OpenStreetMap's tile of Munich's Marienplatz at zoom 10 is 544/355.
  assert.deepEqual([Math.floor(w.x * 1024), Math.floor(w.y * 1024)], [544, 355]);
  const back = unproject(w.x, w.y);
  assert.ok(Math.abs(back.lat - 48.137) < 1e-9 && Math.abs(back.lon - 11.575) < 1e-9);
});

test('haversine: one degree of latitude is about 111.2 km', () => {
  const m = haversineM({ lat: 48, lon: 11 }, { lat: 49, lon: 11 });
  assert.ok(Math.abs(m - 111195) < 5, `got ${m}`);
});

test('scale bar picks a round length that fits', () => {
  const bar = scaleBar(metersPerPixel(48, 14), 150);
  assert.ok([1, 2, 5].includes(bar.meters / 10 ** Math.floor(Math.log10(bar.meters))));
  assert.ok(bar.px <= 150 && bar.px > 150 / 5, `px=${bar.px}`);
  assert.equal(scaleBar(10, 150).label, '1 km');
  assert.equal(scaleBar(0.5, 150).label, '50 m');
});

test('fitBounds zooms out for a long track and in for a short one', () => {
  const long = fitBounds([{ lat: 48, lon: 11 }, { lat: 49, lon: 12 }], 800, 500);
  const short = fitBounds([{ lat: 48, lon: 11 }, { lat: 48.001, lon: 11.001 }], 800, 500);
  assert.ok(short.zoom > long.zoom);
  const c = unproject(long.cx, long.cy);
  assert.ok(c.lat > 48 && c.lat < 49 && c.lon > 11 && c.lon < 12);
});

const pts = (spec) => spec.map(([t, lat, lon, fix]) => ({ t: t * 1000, lat, lon, speed: 30, fix }));

test('a gap longer than the limit becomes a no-fix stretch between the fixes around it', () => {
  const parts = stretches(pts([[0, 48, 11], [10, 48.001, 11], [500, 48.01, 11], [510, 48.011, 11]]), 120);
  assert.deepEqual(parts.map((p) => p.kind), ['fix', 'nofix', 'fix']);
  assert.equal(parts[1].seconds, 490);
  assert.equal(parts[1].points[0].t, 10000);
  assert.equal(parts[1].points[1].t, 500000);
});

test('fixes flagged fix=false are not drawn and make a no-fix stretch', () => {
  const parts = stretches(pts([[0, 48, 11], [1, 0, 0, false], [2, 48.001, 11]]), 120);
  assert.deepEqual(parts.map((p) => p.kind), ['fix', 'nofix', 'fix']);
  assert.ok(parts.every((p) => p.points.every((q) => q.lat !== 0)));
});

test('positionAt interpolates between fixes and holds the last fix inside a gap', () => {
  const track = pts([[0, 48, 11], [10, 48.01, 11], [1000, 49, 11]]);
  const mid = positionAt(track, 5000, 120);
  assert.ok(Math.abs(mid.lat - 48.005) < 1e-9 && !mid.nofix);
  const gap = positionAt(track, 500000, 120);
  assert.equal(gap.lat, 48.01);
  assert.ok(gap.nofix);
  assert.equal(positionAt(track, 2e6, 120).lat, 49);
});

test('totals: distance, duration and top speed', () => {
  const t = totals([{ t: 0, lat: 48, lon: 11, speed: 0 }, { t: 3600e3, lat: 49, lon: 11, speed: 80 }]);
  assert.ok(Math.abs(t.distanceKm - 111.195) < 0.01);
  assert.equal(t.durationS, 3600);
  assert.equal(t.maxSpeedKmh, 80);
  assert.equal(formatDuration(3900), '1 h 05 min');
  assert.equal(formatDuration(42), '42 s');
});

test('the inbox puts EMERGENCY first, then newest first within a severity', () => {
  const events = [
    { severity: 'WARNING', t: 500, deviceId: 'a', detector: 'x', state: 'open' },
    { severity: 'EMERGENCY', t: 100, deviceId: 'b', detector: 'tow', state: 'open' },
    { severity: 'ALERT', t: 900, deviceId: 'a', detector: 'x', state: 'open' },
    { severity: 'EMERGENCY', t: 200, deviceId: 'a', detector: 'unplug', state: 'acknowledged' },
  ];
  assert.deepEqual(inboxOrder(events).map((e) => `${e.severity}@${e.t}`),
    ['EMERGENCY@200', 'EMERGENCY@100', 'ALERT@900', 'WARNING@500']);
  assert.deepEqual(applyFilters(events, { device: 'a', state: 'open' }).map((e) => e.t), [500, 900]);
  assert.deepEqual(applyFilters(events, { detector: 'tow' }).map((e) => e.deviceId), ['b']);
});

test('Spec matches concrete paths against OpenAPI templates, method by method', () => {
  const spec = new Spec({ paths: { '/devices/{device_id}/track': { get: { parameters: [{ in: 'query', name: 'from' }] } },
    '/events/{device_id}/{event_id}/acknowledge': { post: {} } } });
  assert.ok(spec.has('get', '/devices/gw-1/track?from=x'));
  assert.ok(!spec.has('post', '/devices/gw-1/track'));
  assert.ok(spec.has('POST', '/events/gw-1/7/acknowledge'));
  assert.ok(!spec.has('get', '/devices/gw-1/trips'));
  assert.ok(!spec.has('get', '/devices/gw-1/track/extra'));
  assert.deepEqual([...spec.queryParams('get', '/devices/{device_id}/track')], ['from']);
});

test('fleet health lists offline, low battery, backlog and poor clock devices', () => {
  const now = 100 * 3600e3;
  const devices = [
    { id: 'ok', lastSeenAt: now - 60e3, supplyV: 12.6, backupV: 4.1, queueDepth: 3, clockQuality: 'GNSS' },
    { id: 'off', lastSeenAt: now - 30 * 3600e3, supplyV: 12.5, queueDepth: 0, clockQuality: 3 },
    { id: 'weak', lastSeenAt: now, supplyV: 11.2, queueDepth: 500, clockQuality: 'RTC' },
  ];
  const h = fleetHealth(devices, { offlineH: 24 }, now);
  assert.deepEqual(h.offline.map((d) => d.id), ['off']);
  assert.deepEqual(h.lowBattery.map((d) => d.id), ['weak']);
  assert.deepEqual(h.backlog.map((d) => d.id), ['weak']);
  assert.deepEqual(h.clock.map((d) => d.id), ['weak']);
  assert.deepEqual(fleetHealth(devices, { offlineH: 48 }, now).offline, []);
});

test('the forecast falls to zero on the day the budget runs out, or stays above it past 90 days', () => {
  assert.deepEqual(forecastSeries(45), [[0, 100], [45, 0], [90, 0]]);
  const long = forecastSeries(180);
  assert.deepEqual(long, [[0, 100], [90, 50]]);
  assert.equal(forecastSeries(null), null);
});

test('a track GeoJSON becomes time-ordered fixes, no-fix stretches and events', () => {
  const track = normTrack({ type: 'FeatureCollection', properties: { device_id: 'gw-1' }, features: [
    { type: 'Feature', geometry: { type: 'LineString', coordinates: [[11, 48], [11.1, 48.1]] }, properties: { kind: 'track' } },
    { type: 'Feature', geometry: { type: 'Point', coordinates: [11.1, 48.1] },
      properties: { kind: 'fix', time: '2026-01-01T02:00:10Z', speed_kmh: 30 } },
    { type: 'Feature', geometry: { type: 'Point', coordinates: [11, 48] },
      properties: { kind: 'fix', time: '2026-01-01T02:00:00Z', speed_kmh: null } },
    { type: 'Feature', geometry: { type: 'Point', coordinates: [11.1, 48.1] },
      properties: { kind: 'no_fix', from: '2026-01-01T02:00:20Z', to: '2026-01-01T02:05:20Z' } },
    { type: 'Feature', geometry: null, properties: { kind: 'event', time: '2026-01-01T02:00:05Z', severity: 'EMERGENCY', detector: 'tow' } },
  ] });
  assert.deepEqual(track.points.map((p) => p.lat), [48, 48.1]);
  assert.equal(track.points[1].speed, 30);
  assert.equal(track.noFix[0].end - track.noFix[0].start, 300e3);
  assert.equal(track.events[0].severity, 'EMERGENCY');
  assert.equal(track.events[0].lat, null);
  assert.equal(track.events[0].deviceId, 'gw-1');
});

test('playback advances at its speed, stops at the end and reports where it is', async () => {
  const { Playback } = await import('../../../cloud/console/static/js/playback.js');
  const frames = [];
  const track = pts([[0, 48, 11], [600, 48.1, 11], [1200, 48.2, 11]]);
  const p = new Playback(track, { maxGapS: 900, onFrame: (pos) => frames.push(pos) });
  p.speed = 60;
  p.playing = true;
  p.advance(5000);  // 5 s of wall time at 60x: 300 s of track
  assert.equal(p.t, 300e3);
  assert.ok(Math.abs(frames.at(-1).lat - 48.05) < 1e-9);
  p.advance(60000);  // far past the end
  assert.equal(p.t, 1200e3);
  assert.ok(p.atEnd && !p.playing);
  assert.equal(frames.at(-1).lat, 48.2);
});
