// Geometry of a track: Web Mercator projection, distances, scale bars, no-fix stretches and the
// interpolated position at a playback time. Pure functions (no DOM), tested under Node.

export const EARTH_RADIUS_M = 6371008.8;
export const TILE_PX = 256;

/** Web Mercator world coordinates in [0, 1) x [0, 1) of a latitude/longitude in degrees. */
export function project(lat, lon) {
  const clamped = Math.max(-85.05112878, Math.min(85.05112878, lat));
  const s = Math.sin((clamped * Math.PI) / 180);
  return { x: (lon + 180) / 360, y: 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI) };
}

/** Latitude/longitude in degrees of Web Mercator world coordinates. */
export function unproject(x, y) {
  const lon = x * 360 - 180;
  const lat = (Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180) / Math.PI;
  return { lat, lon };
}

/** Great-circle distance in metres between two {lat, lon} points. */
export function haversineM(a, b) {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Ground metres per screen pixel at a latitude and a (fractional) zoom level. */
export function metersPerPixel(lat, zoom) {
  return (Math.cos((lat * Math.PI) / 180) * 2 * Math.PI * EARTH_RADIUS_M) / (TILE_PX * 2 ** zoom);
}

/** The longest round length (1, 2 or 5 x 10^n metres) whose bar fits in maxPx: {meters, px, label}. */
export function scaleBar(mPerPx, maxPx) {
  const maxM = mPerPx * maxPx;
  let step = 10 ** Math.floor(Math.log10(maxM));
  for (const f of [5, 2, 1]) {
    if (f * step <= maxM) { step *= f; break; }
  }
  const label = step >= 1000 ? `${step / 1000} km` : `${step} m`;
  return { meters: step, px: step / mPerPx, label };
}

/** A round grid step in degrees so that lines fall about targetPx apart. */
export function gridStepDeg(degPerPx, targetPx) {
  const raw = degPerPx * targetPx;
  const base = 10 ** Math.floor(Math.log10(raw));
  for (const f of [1, 2, 5, 10]) {
    if (f * base >= raw) return f * base;
  }
  return 10 * base;
}

/** The zoom and centre (world coordinates) that fit all points into width x height pixels. */
export function fitBounds(points, width, height, paddingPx = 40, maxZoom = 18) {
  if (points.length === 0) return { zoom: 2, cx: 0.5, cy: 0.5 };
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const p of points) {
    const w = project(p.lat, p.lon);
    x0 = Math.min(x0, w.x); x1 = Math.max(x1, w.x); y0 = Math.min(y0, w.y); y1 = Math.max(y1, w.y);
  }
  const spanX = Math.max(x1 - x0, 1e-9), spanY = Math.max(y1 - y0, 1e-9);
  const zx = Math.log2((width - 2 * paddingPx) / (spanX * TILE_PX));
  const zy = Math.log2((height - 2 * paddingPx) / (spanY * TILE_PX));
  return { zoom: Math.max(1, Math.min(maxZoom, zx, zy)), cx: (x0 + x1) / 2, cy: (y0 + y1) / 2 };
}

/**
 * Split time-ordered fixes into stretches: 'fix' runs, and 'nofix' stretches between two fixes more
 * than maxGapS apart (or around fixes flagged fix=false), which the map draws dashed.
 */
export function stretches(points, maxGapS) {
  const out = [];
  let run = [];
  let lastGood = null;
  let sawNoFix = false;
  for (const p of points) {
    if (p.fix === false) { sawNoFix = lastGood !== null; continue; }
    if (lastGood && (sawNoFix || (p.t - lastGood.t) / 1000 > maxGapS)) {
      if (run.length) out.push({ kind: 'fix', points: run });
      run = [];
      out.push({ kind: 'nofix', points: [lastGood, p], seconds: (p.t - lastGood.t) / 1000 });
    }
    run.push(p);
    lastGood = p;
    sawNoFix = false;
  }
  if (run.length) out.push({ kind: 'fix', points: run });
  return out;
}

/** Index of the last point at or before time t (binary search; -1 before the first). */
export function indexAt(points, t) {
  let lo = 0, hi = points.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid].t <= t) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
  }
  return found;
}

/**
 * Position at playback time t: interpolated between the fixes around t; `nofix` is true inside a
 * gap longer than maxGapS (the position is then the last fix, not a guess).
 */
export function positionAt(points, t, maxGapS) {
  if (points.length === 0) return null;
  const i = indexAt(points, t);
  if (i < 0) return { ...points[0], index: 0, nofix: false };
  if (i >= points.length - 1) return { ...points[points.length - 1], index: points.length - 1, nofix: false };
  const a = points[i], b = points[i + 1];
  if ((b.t - a.t) / 1000 > maxGapS || b.fix === false) return { ...a, t, index: i, nofix: true };
  const f = b.t === a.t ? 0 : (t - a.t) / (b.t - a.t);
  return {
    t, index: i, nofix: false,
    lat: a.lat + (b.lat - a.lat) * f,
    lon: a.lon + (b.lon - a.lon) * f,
    speed: a.speed == null || b.speed == null ? a.speed : a.speed + (b.speed - a.speed) * f,
  };
}

/** Distance (km), duration (s), moving time (s, speed > 3 km/h) and top speed of fixes. */
export function totals(points) {
  let m = 0, moving = 0, top = 0;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1], b = points[i];
    m += haversineM(a, b);
    if ((b.speed ?? 0) > 3) moving += (b.t - a.t) / 1000;
  }
  for (const p of points) top = Math.max(top, p.speed ?? 0);
  const durationS = points.length > 1 ? (points.at(-1).t - points[0].t) / 1000 : 0;
  return { distanceKm: m / 1000, durationS, movingS: moving, maxSpeedKmh: top };
}

/** "1 h 05 min", "12 min", "40 s": a duration for people. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${String(min % 60).padStart(2, '0')} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
