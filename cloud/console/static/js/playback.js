// Track playback: a clock over the track's time range with play/pause, speed and follow mode.
// The clock is driven by the caller's frame callback so tests can run it with any speed.

import { positionAt } from './geo.js';

export const SPEEDS = [1, 10, 60, 300, 1800, 7200];

export class Playback {
  /** points: the track's good fixes in time order; onFrame(position) is called on every move. */
  constructor(points, { maxGapS = 120, onFrame = () => {} } = {}) {
    this.points = points;
    this.maxGapS = maxGapS;
    this.onFrame = onFrame;
    this.start = points.length ? points[0].t : 0;
    this.end = points.length ? points.at(-1).t : 0;
    this.t = this.start;
    this.speed = 60;
    this.playing = false;
    this._last = null;
    this._raf = null;
  }

  get position() { return positionAt(this.points, this.t, this.maxGapS); }
  get atEnd() { return this.t >= this.end; }

  seek(t) {
    this.t = Math.max(this.start, Math.min(this.end, t));
    this.onFrame(this.position);
  }

  /** Advance by wall-clock milliseconds at the current speed; stops at the end. */
  advance(wallMs) {
    this.seek(this.t + wallMs * this.speed);
    if (this.atEnd) this.pause();
  }

  play() {
    if (this.points.length < 2) return;
    if (this.atEnd) this.seek(this.start);
    this.playing = true;
    this._last = null;
    const tick = (now) => {
      if (!this.playing) return;
      if (this._last !== null) this.advance(now - this._last);
      this._last = now;
      if (this.playing) this._raf = requestAnimationFrame(tick);
    };
    this._raf = requestAnimationFrame(tick);
  }

  pause() {
    this.playing = false;
    if (this._raf !== null) cancelAnimationFrame(this._raf);
    this._raf = null;
    this.onFrame(this.position);
  }
}
