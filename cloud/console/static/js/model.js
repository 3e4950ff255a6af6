// The API's JSON turned into the console's objects, in one place: the views never read raw
// API fields, so a change of the API's shapes changes this file only.

import { parseTime } from './dom.js';

/** What each role is offered (the server enforces the same; this only hides what would be refused). */
export const ROLE_CAN = {
  admin: { inbox: true, act: true, devices: true, track: true, commands: true, fleet: true, audit: true },
  risk_officer: { inbox: true, act: true, devices: true, track: true, commands: true, fleet: true, audit: false },
  account_manager: { inbox: true, act: false, devices: true, track: true, commands: false, fleet: true, audit: false },
  auditor: { inbox: false, act: false, devices: false, track: false, commands: false, fleet: false, audit: true },
};

export function can(role, what) { return Boolean(ROLE_CAN[role]?.[what]); }

/** A list answer: a bare array, or {items|devices|events|...: [...]}. */
export function items(answer, ...names) {
  if (Array.isArray(answer)) return answer;
  for (const n of [...names, 'items', 'data', 'results']) if (Array.isArray(answer?.[n])) return answer[n];
  return [];
}

export function normEvent(raw) {
  const pos = raw.position || {};
  return {
    raw,
    deviceId: raw.device_id,
    eventId: raw.event_id,
    detector: raw.detector,
    severity: raw.severity,
    state: raw.state ?? raw.lifecycle_state ?? 'open',
    t: parseTime(raw.raised_at ?? raw.time),
    updatedAt: parseTime(raw.updated_at ?? raw.time),
    lat: raw.lat_deg ?? pos.lat_deg ?? null,
    lon: raw.lon_deg ?? pos.lon_deg ?? null,
    speed: raw.speed_kmh ?? pos.speed_kmh ?? null,
    evidence: raw.evidence ?? {},
    detail: raw.detail ?? '',
    condition: raw.condition ?? '',
    note: raw.note ?? raw.comment ?? '',
  };
}

export function normDevice(raw) {
  const latest = raw.latest || raw.status || {};
  const pos = raw.position || latest.position || {};
  return {
    raw,
    id: raw.device_id,
    vin: raw.vin ?? '',
    timeZone: raw.time_zone ?? 'UTC',
    lastMessageAt: parseTime(raw.last_message_at ?? latest.last_message_at),
    lastReceivedAt: parseTime(raw.last_received_at ?? latest.last_received_at),
    lastPositionAt: parseTime(raw.last_position_at ?? pos.time ?? latest.last_position_at),
    lat: raw.lat_deg ?? pos.lat_deg ?? null,
    lon: raw.lon_deg ?? pos.lon_deg ?? null,
    speed: raw.speed_kmh ?? pos.speed_kmh ?? null,
    online: raw.online ?? null,
    powerState: latest.power_state ?? raw.power_state ?? null,
    supplyV: latest.supply_v ?? raw.supply_v ?? null,
    backupV: latest.backup_v ?? raw.backup_v ?? null,
    queueDepth: latest.queue_depth ?? raw.queue_depth ?? null,
    firmware: latest.firmware ?? raw.firmware ?? null,
    configVersion: latest.config_version ?? raw.config_version ?? null,
    forecastDays: latest.energy_forecast_days ?? raw.energy_forecast_days ?? null,
    avgCurrentMa: latest.avg_current_ma ?? raw.avg_current_ma ?? null,
    clockQuality: latest.clock_quality ?? raw.clock_quality ?? null,
    ignition: latest.ignition ?? raw.ignition ?? null,
    statusAt: parseTime(latest.time ?? raw.status_at),
    openEvents: raw.open_events ?? null,
  };
}

/**
 * A track answer as the console draws it: {points, noFix, stops, events}. Accepts a GeoJSON
 * FeatureCollection whose LineString features carry per-vertex `times` (and optional `speeds`),
 * or whose Point features each carry a `time`; stops and no-fix stretches as features with
 * properties.kind 'stop' / 'no_fix'.
 */
export function normTrack(answer) {
  const points = [];
  const stops = [];
  const noFix = [];
  const features = answer?.type === 'FeatureCollection' ? answer.features : answer?.features ?? [];
  for (const f of features) {
    const g = f.geometry || {};
    const p = f.properties || {};
    const kind = p.kind ?? p.type ?? 'track';
    if (kind === 'stop') {
      const [lon, lat] = g.coordinates;
      const start = parseTime(p.start ?? p.started_at), end = parseTime(p.end ?? p.ended_at);
      stops.push({ lat, lon, start, end, durationS: p.duration_s ?? (end - start) / 1000 });
    } else if (kind === 'no_fix' || kind === 'nofix' || kind === 'gap') {
      noFix.push({ start: parseTime(p.start ?? p.started_at), end: parseTime(p.end ?? p.ended_at) });
    } else if (g.type === 'LineString' || g.type === 'MultiLineString') {
      const lines = g.type === 'LineString' ? [g.coordinates] : g.coordinates;
      const times = g.type === 'LineString' ? [p.times ?? p.coordTimes] : (p.times ?? p.coordTimes);
      const speeds = g.type === 'LineString' ? [p.speeds ?? p.speed_kmh] : (p.speeds ?? p.speed_kmh ?? []);
      lines.forEach((line, li) => line.forEach(([lon, lat], i) => points.push({
        lat, lon, t: parseTime(times?.[li]?.[i]), speed: speeds?.[li]?.[i] ?? null,
      })));
    } else if (g.type === 'Point') {
      const [lon, lat] = g.coordinates;
      points.push({ lat, lon, t: parseTime(p.time), speed: p.speed_kmh ?? null, fix: p.fix ?? (p.fix_type !== 0) });
    }
  }
  points.sort((a, b) => a.t - b.t);
  return { points: points.filter((p) => p.t != null), stops, noFix };
}
