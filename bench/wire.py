"""Wire size and decode speed of a telemetry batch: lienwatch vs JSON vs one CBOR map per fix.

Workload: batches of 60 GNSS fixes at 1 Hz from a simulated city drive (pulling away, cruising,
braking to a stop, turning at junctions) with receiver noise like a consumer GNSS module
(slowly wandering position error, Doppler speed noise, heading frozen when stopped, HDOP and
satellite count stepping now and then). Every value is rounded to the resolution the lienwatch
catalog gives it, so all formats carry the same information.

Sizes are averaged over many batches. Decode speed is fixes per second for decode + full
validation into typed columns (lienwatch) against `json.loads` alone of the same batch as JSON
objects, measured in interleaved rounds in the same run: the best round of each, and the median
of the ratios measured within the same round (robust to load from other processes).

Encode speed (fixes/s, from typed batches) is printed for information; the edge encodes about
one batch a minute.

Run: `python -m bench.wire` (a few seconds). Prints a table, then one JSON line.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import cbor2

import protocol
from bench.report import print_json_line, print_table
from protocol.messages import (
    ClockQuality,
    FixColumns,
    FixType,
    GnssFix,
    Header,
    SampleColumns,
    TelemetryBatch,
)

FIXES_PER_BATCH = 60
BATCHES = 40
ROUNDS = 15
T0_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
M_PER_DEG_LAT = 111_320.0


def city_drive(n: int = FIXES_PER_BATCH, seed: int = 0, t0_ns: int = T0_NS) -> list[GnssFix]:
    """`n` fixes at 1 Hz of plausible urban driving as a GNSS receiver would report it."""
    rnd = random.Random(seed)
    lat, lon, alt = 47.3769 + rnd.uniform(-0.05, 0.05), 8.5417 + rnd.uniform(-0.05, 0.05), 408.0
    speed, heading = rnd.choice([0.0, 8.0, 13.0]), rnd.uniform(0, 360)  # m/s, degrees
    target, stop_s, turn_s, turn_rate = 13.9, 0, 0, 0.0
    err_n = err_e = err_u = 0.0  # metres of receiver position error (AR(1), wanders slowly)
    hdop, sats = round(rnd.uniform(0.7, 1.1), 1), rnd.randint(9, 14)
    fixes = []
    for i in range(n):
        if stop_s:
            stop_s -= 1
            target = 0.0 if stop_s else rnd.choice([8.3, 11.1, 13.9, 13.9, 16.7])
        elif speed > 5 and rnd.random() < 0.025:
            stop_s = rnd.randint(8, 30)  # a red light ahead
        if not turn_s and 4 < speed < 12 and rnd.random() < 0.04:
            turn_s = rnd.randint(4, 7)
            turn_rate = rnd.choice([-90.0, 90.0]) / turn_s
        accel = (target - speed) * 0.35 + rnd.gauss(0, 0.12)
        accel = max(-3.0, min(1.8, accel if not stop_s else -min(2.5, speed * 0.4 + 0.5)))
        speed = max(0.0, speed + accel)
        if speed < 0.2 and target == 0.0:
            speed = 0.0
        if turn_s:
            heading, turn_s = (heading + turn_rate) % 360, turn_s - 1
        elif speed > 0.5:
            heading = (heading + rnd.gauss(0, 0.8)) % 360  # lane keeping, gentle curves
        lat += speed * math.cos(math.radians(heading)) / M_PER_DEG_LAT
        lon += speed * math.sin(math.radians(heading)) / (M_PER_DEG_LAT * math.cos(math.radians(lat)))
        alt += speed * 0.01 * math.sin(i / 17)  # a gently rolling road
        err_n = 0.92 * err_n + rnd.gauss(0, 0.06)
        err_e = 0.92 * err_e + rnd.gauss(0, 0.06)
        err_u = 0.95 * err_u + rnd.gauss(0, 0.12)
        if rnd.random() < 0.08:
            hdop = round(min(2.5, max(0.6, hdop + rnd.choice([-0.1, 0.1]))), 1)
        if rnd.random() < 0.06:
            sats = min(20, max(6, sats + rnd.choice([-1, 1])))
        reported_speed = speed * 3.6 + (abs(rnd.gauss(0, 0.15)) if speed > 0 else 0.0)
        fixes.append(GnssFix(
            time_ns=t0_ns + i * 1_000_000_000,
            lat_deg=round(lat + err_n / M_PER_DEG_LAT, 7),
            lon_deg=round(lon + err_e / (M_PER_DEG_LAT * math.cos(math.radians(lat))), 7),
            alt_m=round(alt + err_u, 1),
            speed_kmh=round(reported_speed, 2),
            heading_deg=round(heading, 1) % 360,
            hdop=hdop,
            sats=sats,
            fix_type=FixType.FIX_3D,
        ))
    return fixes


def batch_of(fixes: list[GnssFix], seq: int) -> TelemetryBatch:
    header = Header("veh-0001", 7, seq, fixes[-1].time_ns + 500_000_000, ClockQuality.GNSS)
    return TelemetryBatch(header, FixColumns.from_fixes(fixes))


def _iso(time_ns: int) -> str:
    moment = datetime.fromtimestamp(time_ns / 1e9, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_json(batch: TelemetryBatch) -> bytes:
    """The batch as a typical JSON API would carry it: a header and one object per fix."""
    header = batch.header
    return json.dumps({
        "device_id": header.device_id, "boot_id": header.boot_id, "seq": header.seq,
        "sent": _iso(header.sent_ns), "clock_quality": header.clock_quality.name,
        "fixes": [{"time": _iso(f.time_ns), "lat": f.lat_deg, "lon": f.lon_deg, "alt_m": f.alt_m,
                   "speed_kmh": f.speed_kmh, "heading_deg": f.heading_deg, "hdop": f.hdop, "sats": f.sats,
                   "fix": f.fix_type.name} for f in batch.fixes.rows()],
    }, separators=(",", ":")).encode()


def as_cbor_maps(batch: TelemetryBatch) -> bytes:
    """The batch as a straightforward CBOR port of the JSON: one integer-keyed map per fix."""
    header = batch.header
    return cbor2.dumps([
        [header.device_id, header.boot_id, header.seq, header.sent_ns, int(header.clock_quality)],
        [{1: f.time_ns // 1_000_000, 2: f.lat_deg, 3: f.lon_deg, 4: f.alt_m, 5: f.speed_kmh,
          6: f.heading_deg, 7: f.hdop, 8: f.sats, 9: int(f.fix_type)} for f in batch.fixes.rows()],
    ], canonical=True)


def obd_samples(n: int = 300, seed: int = 0, t0_ns: int = T0_NS) -> SampleColumns:
    """A minute of polled OBD-II/CAN signals: speed, rpm, battery voltage, coolant, fuel, moving."""
    rnd = random.Random(seed)
    signals = [(1, 0.01, 48.0, 1.5), (3, 0.25, 1800.0, 60.0), (40, 0.001, 14.1, 0.02), (4, 1.0, 88.0, 0.3),
               (14, 0.01, 61.0, 0.01), (53, 1.0, 1.0, 0.0)]
    state = [level for _, _, level, _ in signals]
    times, ids, values = [], [], []
    for i in range(n):
        k = i % len(signals)
        signal_id, resolution, _, step = signals[k]
        state[k] = max(0.0, state[k] + rnd.gauss(0, step))
        times.append(t0_ns + (i // len(signals)) * 1_000_000_000 + rnd.randint(0, 30) * 1_000_000)
        ids.append(signal_id)
        values.append(round(round(state[k] / resolution) * resolution, 6))
    return SampleColumns(tuple(times), tuple(ids), tuple(values))


def samples_table(n_batches: int, rounds: int) -> None:
    """Signal samples (information only): bytes and decode speed against JSON objects per sample."""
    header = Header("veh-0001", 7, 0, T0_NS, ClockQuality.GNSS)
    batches = [TelemetryBatch(header, samples=obd_samples(seed=seed)) for seed in range(n_batches)]
    payloads = [protocol.encode(b) for b in batches]
    texts = [json.dumps([{"time": _iso(t), "signal": s, "value": v} for t, s, v in zip(
        b.samples.time_ns, b.samples.signal_id, b.samples.value, strict=True)]).encode() for b in batches]
    count = sum(len(b.samples) for b in batches)
    best = {"json": 0.0, "lienwatch": 0.0}
    for _ in range(rounds):
        for name, items, decode in (("json", texts, json.loads), ("lienwatch", payloads, protocol.decode)):
            start = time.perf_counter()
            for item in items:
                decode(item)
            best[name] = max(best[name], count / (time.perf_counter() - start))
    print_table(
        f"signal samples, {count // n_batches} per batch (6 OBD-like signals, information only)",
        ["format", "bytes/sample", "decode samples/s", "x json"],
        [["json", sum(map(len, texts)) / count, best["json"], 1.0],
         ["lienwatch", sum(map(len, payloads)) / count, best["lienwatch"], best["lienwatch"] / best["json"]]],
    )


def _best_rate(payloads: list[bytes], decode: Callable[[bytes], object], repeat: int) -> float:
    """Fixes per second of one timed pass over all payloads (`repeat` times)."""
    start = time.perf_counter()
    for _ in range(repeat):
        for payload in payloads:
            decode(payload)
    return repeat * len(payloads) * FIXES_PER_BATCH / (time.perf_counter() - start)


def main(n_batches: int = BATCHES, rounds: int = ROUNDS) -> None:
    batches = [batch_of(city_drive(seed=seed), seq) for seq, seed in enumerate(range(n_batches))]
    formats: dict[str, list[bytes]] = {
        "json": [as_json(b) for b in batches],
        "cbor_map": [as_cbor_maps(b) for b in batches],
        "lienwatch": [protocol.encode(b) for b in batches],
        "lienwatch_deflate": [protocol.encode(b, deflate=True) for b in batches],
    }
    for batch, payload in zip(batches, formats["lienwatch"], strict=True):
        assert protocol.decode(payload) == batch  # lossless at the catalog resolutions
    bytes_per_fix = {name: sum(map(len, payloads)) / (len(payloads) * FIXES_PER_BATCH)
                     for name, payloads in formats.items()}
    decoders: dict[str, Callable[[bytes], object]] = {
        "json": json.loads, "cbor_map": cbor2.loads, "lienwatch": protocol.decode,
        "lienwatch_deflate": protocol.decode,
    }
    per_round: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(rounds):  # interleaved, so background load hits every format alike
        for name, decode in decoders.items():
            per_round[name].append(_best_rate(formats[name], decode, repeat=10))
    best = {name: max(rates) for name, rates in per_round.items()}
    # The ratio is the median of same-round ratios: robust to load from other processes.
    vs_json = {name: statistics.median(r / j for r, j in zip(rates, per_round["json"], strict=True))
               for name, rates in per_round.items()}
    encoders: dict[str, Callable[[TelemetryBatch], bytes]] = {
        "json": as_json, "cbor_map": as_cbor_maps, "lienwatch": protocol.encode,
        "lienwatch_deflate": lambda batch: protocol.encode(batch, deflate=True),
    }
    encode_rate = dict.fromkeys(encoders, 0.0)
    for _ in range(3):
        for name, encode in encoders.items():
            start = time.perf_counter()
            for batch in batches:
                encode(batch)
            rate = len(batches) * FIXES_PER_BATCH / (time.perf_counter() - start)
            encode_rate[name] = max(encode_rate[name], rate)
    validates = {"json": "no", "cbor_map": "no", "lienwatch": "yes", "lienwatch_deflate": "yes"}
    rows: list[list[object]] = [
        [name, bytes_per_fix[name], bytes_per_fix["json"] / bytes_per_fix[name], best[name],
         vs_json[name], validates[name], encode_rate[name]]
        for name in decoders
    ]
    rows.append(["teltonika codec 8 (reference, no IO)", 30.0, bytes_per_fix["json"] / 30.0, None, None, "-",
                 None])
    print_table(
        f"telemetry batch of {FIXES_PER_BATCH} fixes at 1 Hz, city driving ({n_batches} batches, "
        f"best of {rounds} rounds)",
        ["format", "bytes/fix", "x smaller than json", "decode fixes/s (best)", "x json (median)",
         "typed+validated",
         "encode fixes/s"],
        rows,
    )
    samples_table(max(2, n_batches // 4), rounds)
    print(f"goals: lienwatch <= 12 bytes/fix: {bytes_per_fix['lienwatch']:.2f}; "
          f"decode >= 2x json.loads: {vs_json['lienwatch']:.2f}x (median of same-round ratios)")
    print_json_line({
        "bytes_per_fix": {name: round(value, 2) for name, value in bytes_per_fix.items()},
        "decode_fixes_per_s": {"json": round(best["json"]), "lienwatch": round(best["lienwatch"])},
    })


if __name__ == "__main__":
    main()
