"""NMEA 0183 sentence generator for the HIL bench and the tests: a receiver that says what we want.

`NmeaEpoch` describes one epoch (time, position, fix quality, satellites per constellation);
`epoch_sentences()` renders it the way a multi-constellation receiver (u-blox M8/M9/F9 style)
does: RMC, VTG, GGA, GSA per constellation, GSV per constellation, GST, ZDA. `quirks` add what real
receivers and cables do: corrupt checksums, truncated lines, proprietary and unknown sentences.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from edge.sources.gnss.nmea import make_sentence
from lienwatch.cliargs import integer

# Constellation → (GSV talker, NMEA 4.10 GSA system id).
CONSTELLATIONS = {
    "gps": ("GP", 1),
    "glonass": ("GL", 2),
    "galileo": ("GA", 3),
    "beidou": ("GB", 4),
    "qzss": ("GQ", 5),
}


@dataclass
class NmeaEpoch:
    """One epoch as a receiver would report it. `sats` maps constellation → [(svid, cn0 dB-Hz, used)]."""

    time: dt.datetime
    lat: float = 47.2852331
    lon: float = 8.565265
    alt_m: float = 499.6
    speed_kmh: float = 0.0
    course_deg: float = 0.0
    quality: int = 1  # GGA: 0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning
    nav_mode: int = 3  # GSA: 1 none, 2 2D, 3 3D
    hdop: float = 0.9
    sats: dict[str, list[tuple[int, int, bool]]] = field(default_factory=dict)
    talker: str = "GN"
    std_lat_m: float = 1.2
    std_lon_m: float = 0.9


def _lat(value: float) -> tuple[str, str]:
    degrees = int(abs(value))
    minutes = (abs(value) - degrees) * 60
    return f"{degrees:02d}{minutes:08.5f}", "N" if value >= 0 else "S"


def _lon(value: float) -> tuple[str, str]:
    degrees = int(abs(value))
    minutes = (abs(value) - degrees) * 60
    return f"{degrees:03d}{minutes:08.5f}", "E" if value >= 0 else "W"


def default_sats(cn0: int = 42) -> dict[str, list[tuple[int, int, bool]]]:
    """A sky with GPS, Galileo and BeiDou satellites, most of them used."""
    return {
        "gps": [(3, cn0, True), (4, cn0 - 3, True), (7, cn0 + 2, True), (9, cn0 - 8, False), (16, cn0, True)],
        "galileo": [(5, cn0 - 1, True), (12, cn0 - 4, True), (24, cn0 - 10, False)],
        "beidou": [(8, cn0 + 1, True), (19, cn0 - 2, True), (26, cn0 - 5, True), (35, 0, False)],
    }


def epoch_sentences(epoch: NmeaEpoch) -> list[str]:
    """The sentences of one epoch, each with its checksum, without line endings."""
    t = epoch.time
    hms = t.strftime("%H%M%S") + f".{t.microsecond // 10000:02d}"
    has_fix = epoch.quality != 0
    lat, ns = _lat(epoch.lat) if has_fix else ("", "")
    lon, ew = _lon(epoch.lon) if has_fix else ("", "")
    knots = epoch.speed_kmh / 1.852
    mode = {0: "N", 1: "A", 2: "D", 4: "R", 5: "F", 6: "E"}.get(epoch.quality, "A")
    used = sum(1 for sats in epoch.sats.values() for _, _, u in sats if u)
    tk = epoch.talker
    out = [
        f"{tk}RMC,{hms},{'A' if has_fix else 'V'},{lat},{ns},{lon},{ew},{knots:.3f},"
        f"{epoch.course_deg:.2f},{t.strftime('%d%m%y')},,,{mode},V",
        f"{tk}VTG,{epoch.course_deg:.2f},T,,M,{knots:.3f},N,{epoch.speed_kmh:.3f},K,{mode}",
        f"{tk}GGA,{hms},{lat},{ns},{lon},{ew},{epoch.quality},{used:02d},{epoch.hdop:.2f},"
        f"{epoch.alt_m:.1f},M,48.0,M,,",
    ]
    for name, sats in epoch.sats.items():
        _, system = CONSTELLATIONS[name]
        ids = [f"{svid:02d}" for svid, _, u in sats if u][:12]
        ids += [""] * (12 - len(ids))
        out.append(
            f"{tk}GSA,A,{epoch.nav_mode},{','.join(ids)},{epoch.hdop * 1.4:.2f},{epoch.hdop:.2f},"
            f"{epoch.hdop * 1.1:.2f},{system}"
        )
    for name, sats in epoch.sats.items():
        talker, _ = CONSTELLATIONS[name]
        pages = max(1, math.ceil(len(sats) / 4))
        for page in range(pages):
            chunk = sats[page * 4 : page * 4 + 4]
            fields = ",".join(
                f"{svid:02d},{40 + svid % 40:02d},{(svid * 37) % 360:03d},{cn0:02d}"
                if cn0
                else f"{svid:02d},{40 + svid % 40:02d},{(svid * 37) % 360:03d},"
                for svid, cn0, _ in chunk
            )
            out.append(f"{talker}GSV,{pages},{page + 1},{len(sats):02d},{fields},1")
    out.append(f"{tk}GST,{hms},1.8,,,,{epoch.std_lat_m:.1f},{epoch.std_lon_m:.1f},2.2")
    out.append(f"{tk}ZDA,{hms},{t.day:02d},{t.month:02d},{t.year:04d},00,00")
    return [make_sentence(body) for body in out]


def drive(
    start: dt.datetime,
    seconds: int,
    *,
    lat: float = 47.2852331,
    lon: float = 8.565265,
    speed_kmh: float = 36.0,
    course_deg: float = 90.0,
    quality: int = 1,
    cn0: int = 42,
) -> Iterator[NmeaEpoch]:
    """1 Hz epochs of a car driving straight at constant speed."""
    for i in range(seconds):
        metres = speed_kmh / 3.6 * i
        d_lat = metres * math.cos(math.radians(course_deg)) / 111_320
        d_lon = metres * math.sin(math.radians(course_deg)) / (111_320 * math.cos(math.radians(lat)))
        yield NmeaEpoch(
            time=start + dt.timedelta(seconds=i),
            lat=lat + d_lat,
            lon=lon + d_lon,
            speed_kmh=speed_kmh,
            course_deg=course_deg,
            quality=quality,
            sats=default_sats(cn0),
        )


def quirky_log(start: dt.datetime, seconds: int = 12, seed: int = 5) -> list[str]:
    """A log with every quirk: mixed talkers, RTK fixed/float, dead reckoning, a no-fix epoch,
    corrupt checksums, truncated lines, proprietary, unknown and empty-field sentences, noise."""
    rng = random.Random(seed)
    lines: list[str] = [
        "$PUBX,00,000000.00,0000.00000,N,00000.00000,E,0.000,NF*5C",
        make_sentence("GNTXT,01,01,02,u-blox AG - www.u-blox.com"),
    ]
    qualities = [1, 1, 2, 4, 4, 5, 6, 0, 1, 4, 5, 1]
    for i, epoch in enumerate(drive(start, seconds)):
        epoch.quality = qualities[i % len(qualities)]
        epoch.talker = ["GN", "GP", "GB", "BD", "GN", "GA"][i % 6]
        if epoch.quality == 0:
            epoch.sats = {"gps": [(3, 20, False), (4, 18, False)]}
        sentences = epoch_sentences(epoch)
        if i == 2:  # a corrupt checksum on GSA
            sentences[3] = sentences[3][:-2] + ("00" if sentences[3][-2:] != "00" else "01")
        if i == 3:  # a line cut off by a buffer overrun, glued to the next one
            sentences[1] = sentences[1][:17] + sentences[2]
            del sentences[2]
        if i == 4:  # a truncated line without checksum
            sentences.insert(2, sentences[0][:30])
        if i == 5:
            sentences.insert(1, make_sentence("GNGNS,,,,,,NNNN,00,,,,,"))  # unknown to us
            sentences.insert(1, make_sentence(f"PGRMZ,{rng.randint(100, 900)},f,3"))
        if i == 6:
            sentences.insert(0, "\x00\x00\xff garbage \x7f")
        lines.extend(sentences)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write an NMEA log of a short drive (with quirks).")
    parser.add_argument("--seconds", type=integer(1, 86400), default=12)
    parser.add_argument("--clean", action="store_true", help="no quirks")
    args = parser.parse_args(argv)
    start = dt.datetime(2026, 3, 14, 9, 27, 25, tzinfo=dt.UTC)
    if args.clean:
        for epoch in drive(start, args.seconds):
            print("\r\n".join(epoch_sentences(epoch)), end="\r\n")
    else:
        print("\r\n".join(quirky_log(start, args.seconds)), end="\r\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
