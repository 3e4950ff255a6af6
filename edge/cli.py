"""Commands for device integrators: the agent and the tools to inspect a vehicle's buses."""

from __future__ import annotations

import argparse

from lienwatch.cli import add_group, lazy


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    edge = add_group(commands, "edge", "Run and inspect the on-vehicle agent.")

    run = edge.add_parser("run", help="Run the agent (sources → detectors → uplink).")
    run.add_argument("--config", default="/etc/lienwatch/agent.toml", help="agent TOML config")
    run.set_defaults(handler=lazy("edge.agent.main:run"))

    status = edge.add_parser("status", help="Show sources' health, queue depth and link state.")
    status.add_argument("--config", default="/etc/lienwatch/agent.toml", help="agent TOML config")
    status.add_argument("--status-file", help="read this status file instead of the config's")
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    status.set_defaults(handler=lazy("edge.agent.main:status"))

    probe = edge.add_parser("probe", help="Discover ECUs, supported OBD-II PIDs and the VIN.")
    probe.add_argument("--channel", required=True, help="CAN channel (e.g. can0, or ff11::1:2:3)")
    probe.add_argument("--interface", default="socketcan", help="python-can interface name")
    probe.add_argument("--bitrate", type=int, default=500_000, help="bus bitrate in bit/s (socketcan)")
    probe.add_argument("--timeout", type=float, default=0.2, help="seconds to wait for ECU replies")
    probe.add_argument("--29bit", dest="extended_29bit", action="store_true",
                       help="29-bit OBD addressing (0x18DB33F1 / 0x18DAF1xx)")
    probe.set_defaults(handler=lazy("edge.sources.cli_handlers:edge_probe"))

    obd = add_group(commands, "obd", "Decode OBD-II (SAE J1979) responses.")
    decode = obd.add_parser("decode", help="Decode one OBD-II response, e.g. `41 0C 1A F8`.")
    decode.add_argument("hex", nargs="+", help="response bytes in hex")
    decode.set_defaults(handler=lazy("edge.sources.cli_handlers:obd_decode"))

    gnss = add_group(commands, "gnss", "Read NMEA 0183 logs.")
    parse = gnss.add_parser("parse", help="Print one JSON object per GNSS epoch of an NMEA log.")
    parse.add_argument("file", help="NMEA log file, or - for stdin")
    parse.set_defaults(handler=lazy("edge.sources.cli_handlers:gnss_parse"))
