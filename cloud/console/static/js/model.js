// The API's JSON turned into the console's objects, in one place: the views never read raw
// API fields, so a change of the API's shapes changes this file only.

import { parseTime } from './dom.js';

/** What each role is offered (the server enforces the same; this only hides what would be refused). */
export const ROLE_CAN = {
  admin: { inbox: true, act: true, devices: true, track: true, fleet: true, audit: true },
  risk_officer: { inbox: true, act: true, devices: true, track: true, fleet: true, audit: false },
  account_manager: { inbox: true, act: true, devices: true, track: true, fleet: true, audit: false },
  auditor: { inbox: false, act: false, devices: false, track: false, fleet: false, audit: true },
};

/** Who may send which command action (cloud/api/commands.py ACTIONS). */
export const COMMAND_ROLES = {
  request_position: ['admin', 'risk_officer', 'account_manager'],
  set_geofence: ['admin', 'risk_officer'],
  payment_reminder: ['admin', 'risk_officer'],
  arm_starter_interrupt: ['admin', 'risk_officer'],
  release_starter_interrupt: ['admin', 'risk_officer'],
};

export function canSend(role, action) { return (COMMAND_ROLES[action] || []).includes(role); }

export function can(role, what) { return Boolean(ROLE_CAN[role]?.[what]); }

/** A list answer: a bare array, or {items|devices|events|...: [...]}. */
export function items(answer, ...names) {
  if (Array.isArray(answer)) return answer;
  for (const n of [...names, 'items', 'data', 'results']) if (Array.isArray(answer?.[n])) return answer[n];
  return [];
}

export function normEvent(raw) {
  return {
    raw,
    deviceId: raw.device_id,
    eventId: raw.event_id,
    detector: raw.detector,
    severity: raw.severity,
    state: raw.state ?? 'open',
    t: parseTime(raw.raised_at),
    updatedAt: parseTime(raw.state_changed_at ?? raw.last_transition_at),
    updatedBy: raw.state_changed_by ?? null,
    lat: raw.lat_deg ?? null,
    lon: raw.lon_deg ?? null,
    speed: raw.speed_kmh ?? null,
    evidence: raw.evidence,  // null: not shown to this role
    detail: raw.detail ?? '',
    condition: raw.condition ?? '',
    note: raw.note ?? '',
    transitions: raw.transitions ?? 1,
  };
}

/** A device from the list (DeviceSummary) or its detail (DeviceDetail). */
export function normDevice(raw) {
  const status = raw.status || {};
  const pos = raw.position || {};
  const ignition = raw.ignition || {};
  return {
    raw,
    id: raw.device_id,
    vin: raw.vin ?? '',
    timeZone: raw.time_zone ?? 'UTC',
    monitoring: raw.monitoring_state ?? '',
    lastMessageAt: parseTime(raw.last_message_at),
    lastSeenAt: parseTime(raw.last_seen_at),
    online: raw.online ?? null,
    lastPositionAt: parseTime(pos.time),
    lat: pos.lat_deg ?? null,
    lon: pos.lon_deg ?? null,
    speed: pos.speed_kmh ?? null,
    ignition: ignition.on ?? null,
    ignitionSource: ignition.source ?? null,
    statusAt: parseTime(status.time),
    powerState: status.power_state ?? raw.power_state ?? null,
    supplyV: status.supply_v ?? null,
    backupV: status.backup_v ?? null,
    queueDepth: status.queue_depth ?? null,
    firmware: status.firmware ?? null,
    configVersion: status.config_version ?? null,
    forecastDays: status.energy_forecast_days ?? null,
    clockQuality: status.clock_quality ?? null,
    openEvents: Array.isArray(raw.open_events) ? raw.open_events.length : raw.open_events ?? null,
    openMaxSeverity: raw.open_max_severity ?? null,
  };
}

/**
 * A track answer (GeoJSON FeatureCollection of GET /devices/{id}/track) as the console draws it:
 * {points, noFix, stops, events}. Points are the `fix` features (time, speed_kmh); `no_fix`
 * features give the stretches without a fix (from, to); `event` features the events in range;
 * the `track` LineString repeats the fixes without times and is not needed.
 */
export function normTrack(answer) {
  const points = [];
  const stops = [];
  const noFix = [];
  const events = [];
  for (const f of answer?.features ?? []) {
    const c = f.geometry?.type === 'Point' ? f.geometry.coordinates : null;
    const p = f.properties || {};
    if (p.kind === 'fix' && c) {
      points.push({ lon: c[0], lat: c[1], t: parseTime(p.time), speed: p.speed_kmh ?? null });
    } else if (p.kind === 'no_fix') {
      noFix.push({ start: parseTime(p.from), end: parseTime(p.to), lat: c?.[1] ?? null, lon: c?.[0] ?? null });
    } else if (p.kind === 'event') {
      events.push({ deviceId: answer.properties?.device_id, eventId: p.event_id, detector: p.detector,
        severity: p.severity, state: p.state, transition: p.transition, t: parseTime(p.time),
        lat: c?.[1] ?? null, lon: c?.[0] ?? null, detail: p.detail ?? '' });
    } else if (p.kind === 'stop' && c) {
      stops.push(normStop({ ...p, place: { lat_deg: c[1], lon_deg: c[0] } }));
    }
  }
  points.sort((a, b) => a.t - b.t);
  return { points: points.filter((q) => q.t != null), noFix, stops, events };
}

/** A stop of GET /devices/{id}/trips: {start, end, duration_s, place: {lat_deg, lon_deg}, ...}. */
export function normStop(raw) {
  const start = parseTime(raw.start), end = parseTime(raw.end);
  return { lat: raw.place?.lat_deg, lon: raw.place?.lon_deg, start, end,
    durationS: raw.duration_s ?? (end - start) / 1000, poi: raw.point_of_interest ?? null,
    dataGap: Boolean(raw.data_gap), last: Boolean(raw.last) };
}

/** A trip of GET /devices/{id}/trips. */
export function normTrip(raw) {
  return { start: parseTime(raw.start), end: parseTime(raw.end), durationS: raw.duration_s ?? 0,
    distanceKm: (raw.distance_m ?? 0) / 1000, maxSpeedKmh: raw.max_speed_kmh ?? null,
    avgSpeedKmh: raw.avg_speed_kmh ?? null };
}
