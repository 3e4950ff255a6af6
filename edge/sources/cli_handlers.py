"""Handlers of the integrator tools: `edge probe`, `obd decode`, `gnss parse`.

Loaded lazily by edge/cli.py. Bad input raises a `LienwatchError` subclass, which the CLI turns
into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import BinaryIO

from lienwatch.errors import ConfigError, LienwatchError
from lienwatch.fmt import number

NRC_NAMES = {
    0x10: "generalReject",
    0x11: "serviceNotSupported",
    0x12: "subFunctionNotSupported",
    0x13: "incorrectMessageLengthOrInvalidFormat",
    0x14: "responseTooLong",
    0x21: "busyRepeatRequest",
    0x22: "conditionsNotCorrect",
    0x31: "requestOutOfRange",
    0x78: "responsePending",
}


# `gnss parse` prints time, position, speed, course, fix type, satellites used and HDOP: nothing
# from GSV (satellites in view, C/N0) or GST (accuracy), a third of a receiver's sentences.
GNSS_PARSE_UNDECODED = frozenset({"GSV", "GST"})


class NmeaInputError(LienwatchError):
    """A file given to `gnss parse` that cannot be read or holds no NMEA at all."""


def obd_decode(args: argparse.Namespace) -> int:
    """`lienwatch obd decode 41 0C 1A F8` → one JSON object per decoded value."""
    from edge.sources.obd.pids import (
        VIN,
        ObdDecodeError,
        decode_dtcs,
        decode_response,
        decode_vehicle_info,
        parse_hex,
    )

    if args.list:
        from edge.sources.obd.pids import all_fields

        for pid, f in all_fields():
            print(json.dumps({"pid": f"0x{pid.pid:02X}", "name": f.name, "vss": f.vss, "unit": f.unit}))
        return 0
    payload = parse_hex(list(args.hex))
    first = payload[0]
    if first == 0x7F:
        if len(payload) < 3:
            raise ObdDecodeError("negative response needs 3 bytes: 7F service NRC")
        print(
            json.dumps(
                {
                    "service": f"0x{payload[1]:02X}",
                    "nrc": f"0x{payload[2]:02X}",
                    "meaning": NRC_NAMES.get(payload[2], "unknown"),
                }
            )
        )
        return 0
    if first in (0x43, 0x47, 0x4A):
        print(json.dumps({"service": f"0x{first - 0x40:02X}", "dtcs": decode_dtcs(payload)}))
        return 0
    if first == 0x49:
        info = decode_vehicle_info(payload)
        record: dict[str, object] = {"service": "0x09"}
        if info.pid == VIN:
            record["vin"] = info.texts[0]
        else:
            record |= {"pid": f"0x{info.pid:02X}", "name": info.name}
            record |= {"values": list(info.texts)} if info.texts else {"counters": dict(info.counters)}
        print(json.dumps(record))
        return 0
    if first != 0x41:
        raise ObdDecodeError(
            f"cannot decode a response starting with 0x{first:02X}: expected 41 (mode 01), "
            "43/47/4A (DTCs), 49 (mode 09: VIN, calibration ids, CVNs, ECU name, in-use counters) "
            "or 7F (negative response)"
        )
    values = decode_response(payload)
    if not values:
        raise ObdDecodeError("the response carries only supported-PID bitmasks, no value to decode")
    for value in values:
        print(
            json.dumps(
                {
                    "pid": f"0x{value.pid:02X}",
                    "name": value.name,
                    "vss": value.vss,
                    "value": round(value.value, 6),
                    "unit": value.unit,
                    **({"text": value.text} if value.text is not None else {}),
                }
            )
        )
    return 0


def gnss_parse(args: argparse.Namespace) -> int:
    """`lienwatch gnss parse FILE` → one JSON object per epoch; summary on stderr."""
    from edge.sources.gnss.source import NmeaLog, read_lines

    log = NmeaLog(undecoded=GNSS_PARSE_UNDECODED)
    printed = 0
    try:
        stream: BinaryIO = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as error:
        raise NmeaInputError(f"cannot read {args.file}: {error.strerror}") from None
    try:
        for fix in log.fixes(read_lines(stream)):
            print(json.dumps(fix.as_json(), allow_nan=False))  # values are finite (fix.plausible)
            printed += 1
    except BrokenPipeError:  # `lienwatch gnss parse FILE | head`: the reader has seen enough
        _silence_stdout()
        return 0
    except OSError as error:
        raise NmeaInputError(f"cannot read {args.file}: {error.strerror}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    stats = log.parser.stats
    nulled = ", ".join(f"{n} {name}" for name, n in sorted(log.assembler.implausible.items()))
    implausible = f"; implausible values nulled: {nulled}" if nulled else ""
    print(f"gnss parse: {printed} epochs{implausible}; {stats.summary()}", file=sys.stderr)
    if stats.accepted == 0:
        raise NmeaInputError(f"{args.file} holds no valid NMEA 0183 sentence ({stats.lines} lines read)")
    return 0


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def edge_probe(args: argparse.Namespace) -> int:
    """`lienwatch edge probe`: discover ECUs, their supported PIDs and the VIN; print a table."""
    from edge.sources.can_bus import open_bus
    from edge.sources.obd.client import ObdClient
    from edge.sources.obd.pids import PIDS, decode_pid
    from lienwatch.clock import SystemClock

    port = getattr(args, "port", None)
    if port is not None and args.interface != "udp_multicast":
        raise ConfigError("--port applies to --interface udp_multicast only")
    extra = {"port": port} if port is not None else {}
    bus = open_bus(args.interface, args.channel, bitrate=args.bitrate, **extra)
    try:
        client = ObdClient(bus, SystemClock(), extended_29bit=args.extended_29bit, timeout_s=args.timeout)
        ecus = client.discover()
        if not ecus:
            print(
                f"no ECU answered on {args.interface}:{args.channel} within {args.timeout} s "
                "(ignition off? wrong bitrate or addressing?)",
                file=sys.stderr,
            )
            return 1
        vins = client.read_vin()
        values = client.read_pids(sorted(p for p in PIDS if any(p in s.supported for s in ecus.values())))
    finally:
        bus.shutdown()
    rows = [("ECU", "multi-PID", "supported PIDs", "VIN")]
    for ecu_id, state in sorted(ecus.items()):
        pids = " ".join(f"{p:02X}" for p in sorted(state.supported) if p % 0x20)
        rows.append(
            (
                client.addressing.ecu_label(ecu_id),
                "yes" if state.multi_pid_ok else "no (NRC 0x12)",
                pids or "-",
                vins.get(ecu_id, "-"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)))
    if values:
        print()
        print("current values:")
        for ecu_id, data in sorted(values.items()):
            for pid, raw in sorted(data.items()):
                if pid in PIDS:
                    for value in decode_pid(pid, raw):
                        print(
                            f"  {client.addressing.ecu_label(ecu_id)}  {pid:02X} {value.name:<30} "
                            f"{number(value.value)} {value.unit}  {value.vss}"
                        )
    return 0
