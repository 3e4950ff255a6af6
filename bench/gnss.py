"""GNSS parsing throughput on a 10 MB NMEA log (issue 12 item 5: `gnss parse` ran at 0.3 MB/s).

A multi-constellation receiver's log (hil/gnss.py: RMC, VTG, GGA, GSA ×5, GSV ×11, GST, ZDA per
epoch) goes through, in the same run:
- `pynmeagps` : every line to pynmeagps's `NMEAReader.parse` (what `NmeaParser` called before
  it decoded fields itself) — the baseline, parsing only, no epochs;
- `source`    : `NmeaParser` + `EpochAssembler` with every sentence decoded (the agent's GNSS
  source with `slow_sentence_interval_s = 0`);
- `gnss parse`: the CLI's pipeline (bounded line reader, GSV/GST checked but not decoded, one
  JSON line per epoch), to /dev/null.
Figures are MB of log per CPU second of this process (`time.process_time`, steadier than the wall
clock on a shared machine) and per wall second. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import print_json_line, print_table
from hil.gnss import drive, epoch_sentences
from lienwatch.cliargs import number

START = dt.datetime(2026, 3, 14, 9, 27, 25, tzinfo=dt.UTC)


def make_log(path: Path, megabytes: float) -> int:
    """A log of about `megabytes` MB, epochs of a 10-minute drive repeated; returns its size."""
    block = "".join(s + "\r\n" for epoch in drive(START, 600) for s in epoch_sentences(epoch)).encode()
    path.write_bytes(block * max(1, round(megabytes * 1e6 / len(block))))
    return path.stat().st_size


def _pynmeagps(path: Path) -> int:
    import pynmeagps
    from pynmeagps import NMEAReader

    count = 0
    with path.open("rb") as stream:
        for line in stream:
            NMEAReader.parse(line, validate=pynmeagps.VALNONE)
            count += 1
    return count


def _source(path: Path) -> int:
    from edge.sources.gnss.source import NmeaLog, read_lines

    with path.open("rb") as stream:
        return sum(1 for _ in NmeaLog().fixes(read_lines(stream)))


def _gnss_parse(path: Path) -> int:
    from lienwatch.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["gnss", "parse", str(path)])
    if code != 0:
        raise SystemExit(f"gnss parse failed: {err.getvalue()}")
    return out.getvalue().count("\n")


def _measure(run: Callable[[Path], int], path: Path) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    items = run(path)
    return items, time.process_time() - cpu, time.perf_counter() - wall


def main(megabytes: float = 10.0) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="lienwatch-bench-gnss-") as scratch:
        path = Path(scratch) / "drive.nmea"
        size = make_log(path, megabytes)
        mb = size / 1e6
        results = {name: _measure(run, path) for name, run in
                   (("pynmeagps", _pynmeagps), ("source", _source), ("gnss parse", _gnss_parse))}
    base_cpu = results["pynmeagps"][1]
    rows = [(name, items, f"{cpu:.2f}", f"{wall:.2f}", mb / cpu, mb / wall, base_cpu / cpu)
            for name, (items, cpu, wall) in results.items()]
    print_table(f"NMEA log of {mb:.1f} MB ({os.cpu_count()} cores, shared)",
                ("pipeline", "lines or epochs", "cpu s", "wall s", "MB/cpu s", "MB/wall s", "× pynmeagps"),
                rows)
    figures: dict[str, object] = {
        "log_mb": round(mb, 2),
        "mb_per_cpu_s": {name: round(mb / cpu, 2) for name, (_, cpu, _) in results.items()},
        "mb_per_wall_s": {name: round(mb / wall, 2) for name, (_, _, wall) in results.items()},
        "gnss_parse_epochs": results["gnss parse"][0],
    }
    print_json_line(figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=number(0, 1000), default=10.0, help="size of the log (MB)")
    main(parser.parse_args().mb)
    sys.exit(0)
