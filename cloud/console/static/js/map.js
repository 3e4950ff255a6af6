// A canvas map: Web Mercator, raster tiles from a configured URL template ({z}/{x}/{y}) when
// there is one, otherwise a plain projected grid; always a scale bar. Draws a track's stretches
// (dashed where there was no fix), stops with their durations, events and the playback cursor.

import { fitBounds, formatDuration, gridStepDeg, metersPerPixel, project, scaleBar, TILE_PX, unproject } from './geo.js';

const SEVERITY_COLOUR = { EMERGENCY: '#b3001b', ALERT: '#d35400', WARNING: '#b58900' };

export class MapView {
  constructor(canvas, { tileUrl = '', attribution = '' } = {}) {
    this.canvas = canvas;
    this.tileUrl = tileUrl;
    this.attribution = attribution;
    this.tiles = new Map();
    this.zoom = 2; this.cx = 0.5; this.cy = 0.5;
    this.track = { stretches: [], stops: [], events: [] };
    this.cursor = null;
    this.playedIndex = -1;
    this.follow = true;
    this.onUserPan = null;
    this._bind();
    this.resize();
  }

  _bind() {
    let drag = null;
    this.canvas.addEventListener('mousedown', (e) => { drag = { x: e.clientX, y: e.clientY, cx: this.cx, cy: this.cy }; });
    window.addEventListener('mouseup', () => { drag = null; });
    window.addEventListener('mousemove', (e) => {
      if (!drag) return;
      const world = TILE_PX * 2 ** this.zoom;
      this.cx = drag.cx - (e.clientX - drag.x) / world;
      this.cy = drag.cy - (e.clientY - drag.y) / world;
      if (this.follow && this.onUserPan) this.onUserPan();
      this.draw();
    });
    this.canvas.addEventListener('wheel', (e) => {
      e.preventDefault();
      const rect = this.canvas.getBoundingClientRect();
      const mx = e.clientX - rect.left - rect.width / 2, my = e.clientY - rect.top - rect.height / 2;
      const before = TILE_PX * 2 ** this.zoom;
      const wx = this.cx + mx / before, wy = this.cy + my / before;
      this.zoom = Math.max(1, Math.min(19, this.zoom - Math.sign(e.deltaY) * 0.5));
      const after = TILE_PX * 2 ** this.zoom;
      this.cx = wx - mx / after; this.cy = wy - my / after;
      this.draw();
    }, { passive: false });
    window.addEventListener('resize', () => this.resize());
  }

  resize() {
    const rect = this.canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    this.width = Math.max(1, rect.width); this.height = Math.max(1, rect.height);
    this.canvas.width = Math.round(this.width * ratio);
    this.canvas.height = Math.round(this.height * ratio);
    this.ratio = ratio;
    this.draw();
  }

  /** {stretches, stops, events} in the console's track model (see track.js). */
  setTrack(track) {
    this.track = track;
    const all = track.stretches.flatMap((s) => s.points);
    const fit = fitBounds(all.length ? all : track.events, this.width, this.height);
    this.zoom = fit.zoom; this.cx = fit.cx; this.cy = fit.cy;
    this.draw();
  }

  /** Move the playback cursor; in follow mode `recenter` keeps it in the middle of the map. */
  setCursor(position, recenter = true) {
    this.cursor = position;
    if (position && this.follow && recenter) {
      const w = project(position.lat, position.lon);
      this.cx = w.x; this.cy = w.y;
    }
    this.draw();
  }

  toScreen(lat, lon) {
    const w = project(lat, lon), world = TILE_PX * 2 ** this.zoom;
    return { x: (w.x - this.cx) * world + this.width / 2, y: (w.y - this.cy) * world + this.height / 2 };
  }

  draw() {
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.fillStyle = '#eef1f4';
    ctx.fillRect(0, 0, this.width, this.height);
    if (!(this.tileUrl && this._drawTiles(ctx))) this._drawGrid(ctx);
    this._drawTrack(ctx);
    this._drawScale(ctx);
  }

  _drawTiles(ctx) {
    const z = Math.max(0, Math.min(19, Math.round(this.zoom)));
    const scale = 2 ** (this.zoom - z), size = TILE_PX * scale, n = 2 ** z;
    const left = this.cx * n - this.width / 2 / size, top = this.cy * n - this.height / 2 / size;
    let drawn = 0;
    for (let tx = Math.floor(left); tx < left + this.width / size; tx++) {
      for (let ty = Math.floor(top); ty < top + this.height / size; ty++) {
        if (ty < 0 || ty >= n) continue;
        const img = this._tile(z, ((tx % n) + n) % n, ty);
        if (img.complete && img.naturalWidth > 0) {
          ctx.drawImage(img, (tx - left) * size, (ty - top) * size, size + 0.5, size + 0.5);
          drawn += 1;
        }
      }
    }
    if (this.attribution) {
      ctx.fillStyle = 'rgba(255,255,255,.8)';
      ctx.fillRect(this.width - 260, this.height - 16, 260, 16);
      ctx.fillStyle = '#333'; ctx.font = '11px sans-serif'; ctx.textAlign = 'right';
      ctx.fillText(this.attribution, this.width - 4, this.height - 4);
      ctx.textAlign = 'left';
    }
    return drawn > 0;
  }

  _tile(z, x, y) {
    const key = `${z}/${x}/${y}`;
    let img = this.tiles.get(key);
    if (!img) {
      img = new Image();
      img.onload = () => this.draw();
      img.src = this.tileUrl.replace('{z}', z).replace('{x}', x).replace('{y}', y);
      this.tiles.set(key, img);
    }
    return img;
  }

  _drawGrid(ctx) {
    const world = TILE_PX * 2 ** this.zoom;
    const nw = unproject(this.cx - this.width / 2 / world, this.cy - this.height / 2 / world);
    const se = unproject(this.cx + this.width / 2 / world, this.cy + this.height / 2 / world);
    const step = gridStepDeg((se.lon - nw.lon) / this.width, 110);
    ctx.strokeStyle = '#d3d9e0'; ctx.lineWidth = 1; ctx.fillStyle = '#8a94a3'; ctx.font = '10px sans-serif';
    for (let lon = Math.ceil(nw.lon / step) * step; lon <= se.lon; lon += step) {
      const x = this.toScreen(0, lon).x;
      ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, this.height); ctx.stroke();
      ctx.fillText(`${lon.toFixed(decimals(step))}°`, x + 2, 10);
    }
    for (let lat = Math.ceil(se.lat / step) * step; lat <= nw.lat; lat += step) {
      const y = this.toScreen(lat, nw.lon).y;
      ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(this.width, y); ctx.stroke();
      ctx.fillText(`${lat.toFixed(decimals(step))}°`, 2, y - 2);
    }
  }

  _line(ctx, points) {
    ctx.beginPath();
    points.forEach((p, i) => {
      const s = this.toScreen(p.lat, p.lon);
      if (i === 0) ctx.moveTo(s.x, s.y); else ctx.lineTo(s.x, s.y);
    });
    ctx.stroke();
  }

  _drawTrack(ctx) {
    const { stretches, stops, events } = this.track;
    ctx.lineJoin = 'round'; ctx.lineCap = 'round';
    for (const s of stretches) {
      if (s.kind === 'nofix') {
        ctx.setLineDash([6, 6]); ctx.strokeStyle = '#7a7a7a'; ctx.lineWidth = 2;
      } else {
        ctx.setLineDash([]); ctx.strokeStyle = '#1f5fbf'; ctx.lineWidth = 3;
      }
      this._line(ctx, s.points);
    }
    ctx.setLineDash([]);
    if (this.cursor) {
      const played = stretches.filter((s) => s.kind === 'fix')
        .map((s) => s.points.filter((p) => p.t <= this.cursor.t)).filter((p) => p.length > 1);
      ctx.strokeStyle = '#0b2e66'; ctx.lineWidth = 4;
      for (const p of played) this._line(ctx, p);
    }
    ctx.font = '11px sans-serif';
    for (const stop of stops) {
      const s = this.toScreen(stop.lat, stop.lon);
      ctx.fillStyle = '#fff'; ctx.strokeStyle = '#2e7d32'; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(s.x, s.y, 7, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      ctx.fillStyle = '#2e7d32'; ctx.fillText('P', s.x - 3, s.y + 4);
      ctx.fillStyle = '#1d2330'; ctx.fillText(formatDuration(stop.durationS), s.x + 10, s.y + 4);
    }
    for (const ev of events) {
      if (ev.lat == null || ev.lon == null) continue;
      const s = this.toScreen(ev.lat, ev.lon);
      ctx.fillStyle = SEVERITY_COLOUR[ev.severity] || '#555';
      ctx.beginPath(); ctx.moveTo(s.x, s.y - 10); ctx.lineTo(s.x + 8, s.y + 5); ctx.lineTo(s.x - 8, s.y + 5);
      ctx.closePath(); ctx.fill();
      ctx.fillStyle = '#fff'; ctx.fillText('!', s.x - 1.5, s.y + 3);
    }
    if (this.cursor) {
      const s = this.toScreen(this.cursor.lat, this.cursor.lon);
      ctx.fillStyle = this.cursor.nofix ? '#7a7a7a' : '#0b2e66';
      ctx.strokeStyle = '#fff'; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(s.x, s.y, 8, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }
  }

  _drawScale(ctx) {
    const lat = unproject(this.cx, this.cy).lat;
    const bar = scaleBar(metersPerPixel(lat, this.zoom), 150);
    const x = 12, y = this.height - 14;
    ctx.fillStyle = 'rgba(255,255,255,.85)'; ctx.fillRect(x - 6, y - 18, bar.px + 60, 26);
    ctx.strokeStyle = '#1d2330'; ctx.lineWidth = 2; ctx.setLineDash([]);
    ctx.beginPath(); ctx.moveTo(x, y - 6); ctx.lineTo(x, y); ctx.lineTo(x + bar.px, y); ctx.lineTo(x + bar.px, y - 6);
    ctx.stroke();
    ctx.fillStyle = '#1d2330'; ctx.font = '11px sans-serif';
    ctx.fillText(bar.label, x + bar.px + 6, y);
    this.scale = bar;
  }
}

function decimals(step) { return Math.max(0, -Math.floor(Math.log10(step))); }
