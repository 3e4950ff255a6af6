// A small SVG line chart (no library): x and y axes with round ticks, one or more series, and
// vertical markers. Used for the 90-day energy forecast.

const NS = 'http://www.w3.org/2000/svg';

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * lineChart({series: [{points: [[x, y], ...], colour, label, dashed}], xMax, yMax, xLabel, yLabel,
 * markers: [{x, label}]}) -> an <svg>.
 */
export function lineChart({ series, xMax, yMax = 100, xLabel = '', yLabel = '', markers = [], id = '' }) {
  const W = 640, H = 250, L = 44, R = 12, T = 24, B = 34;
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', id });
  const sx = (x) => L + (x / xMax) * (W - L - R);
  const sy = (y) => T + (1 - y / yMax) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = (yMax / 4) * i;
    svg.append(el('line', { x1: L, x2: W - R, y1: sy(y), y2: sy(y), stroke: '#e3e6ea' }));
    svg.append(el('text', { x: L - 6, y: sy(y) + 4, 'text-anchor': 'end' }, String(Math.round(y))));
  }
  const xStep = xMax > 60 ? 15 : xMax > 20 ? 5 : 1;
  for (let x = 0; x <= xMax; x += xStep) {
    svg.append(el('text', { x: sx(x), y: H - B + 14, 'text-anchor': 'middle' }, String(x)));
  }
  svg.append(el('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, xLabel));
  svg.append(el('text', { x: L, y: 12, 'text-anchor': 'start' }, yLabel));
  for (const m of markers) {
    svg.append(el('line', { x1: sx(m.x), x2: sx(m.x), y1: T, y2: H - B, stroke: '#b3001b', 'stroke-dasharray': '4 3' }));
    svg.append(el('text', { x: sx(m.x) - 4, y: T + 10, 'text-anchor': 'end' }, m.label));
  }
  for (const s of series) {
    const d = s.points.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(Math.min(x, xMax)).toFixed(1)},${sy(Math.max(0, y)).toFixed(1)}`).join(' ');
    const path = el('path', { d, fill: 'none', stroke: s.colour || '#1f5fbf', 'stroke-width': 2 });
    if (s.dashed) path.setAttribute('stroke-dasharray', '6 4');
    path.dataset.series = s.label || '';
    svg.append(path);
  }
  svg.append(el('line', { x1: L, x2: L, y1: T, y2: H - B, stroke: '#9aa3ad' }));
  svg.append(el('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: '#9aa3ad' }));
  return svg;
}
