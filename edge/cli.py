"""Commands for device integrators: the agent and the tools to inspect a vehicle's buses."""

from __future__ import annotations

import argparse

from lienwatch.cli import add_group, lazy
from lienwatch.cliargs import integer, number, udp_port


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

    override = edge.add_parser("override", help="Hand the running agent a borrower's emergency code.",
                               description="Hand the running agent an 8-digit emergency code: it releases "
                               "an armed starter interrupt for 24 h (docs/actuators.md).")
    override.add_argument("code", help="the 8-digit code the lender gave")
    override.add_argument("--config", default="/etc/lienwatch/agent.toml", help="agent TOML config")
    override.set_defaults(handler=lazy("edge.agent.main:override"))

    power = edge.add_parser("power", help="The energy budget: plans, forecasts and why.",
                            description="The energy budget: plans, forecasts and why.")
    power_commands = power.add_subparsers(dest="power_command", metavar="SUBCOMMAND", required=True)
    plan = power_commands.add_parser("plan", help="Print every power state's plan, its forecast and why.")
    plan.add_argument("--profile", default="tbox-reference",
                      help="board power profile: a built-in name or a .toml file")
    plan.add_argument("--days", type=float, default=90.0, help="horizon the parked budget must last")
    plan.add_argument("--capacity-ah", type=float, default=60.0, help="vehicle battery capacity (Ah)")
    plan.add_argument("--soc-pct", type=float, default=80.0, help="battery state of charge now (%%)")
    plan.add_argument("--crank-soc-pct", type=float, default=50.0,
                      help="state of charge below which the engine may not crank (%%)")
    plan.add_argument("--temperature-c", type=float, default=25.0, help="battery temperature (°C)")
    plan.add_argument("--vehicle-quiescent-ma", type=float, default=None,
                      help="the car's own parked draw (mA), if known")
    plan.add_argument("--policy", help="TOML file with a [power] table of policy options")
    plan.add_argument("--json", action="store_true", help="print the plans as JSON")
    plan.set_defaults(handler=lazy("edge.power.cli_handlers:plan"))

    provision = edge.add_parser(
        "provision", help="Give this device its identity: key (made here), CSR, agent config.",
        description="Make the device key on this device (it never leaves it), a CSR with the device id "
                    "as CN for the cloud to sign, and the agent config from a template.")
    provision.add_argument("--id", required=True, help="device id (the certificate's common name)")
    provision.add_argument("--host", required=True, help="the broker's host name (as in its certificate)")
    provision.add_argument("--port", type=integer(1, 65535), default=8883, help="the broker's TLS port")
    provision.add_argument("--vin", help="the vehicle's VIN, if known at the factory")
    provision.add_argument("--time-zone", default="UTC", help="IANA time zone of the vehicle's home")
    provision.add_argument("--etc", default="/etc/lienwatch", help="config directory (pki/ below it)")
    provision.add_argument("--state-dir", help="the agent's state directory (default: the template's)")
    provision.add_argument("--template", default=None,
                           help="agent config template (default: the packaged agent.example.toml)")
    provision.add_argument("--force", action="store_true", help="replace an existing device key")
    provision.set_defaults(handler=lazy("edge.provision:run_provision"))

    install_cert = edge.add_parser("install-cert", help="Install the device certificate the cloud signed.")
    install_cert.add_argument("--cert", required=True, help="the signed certificate (PEM)")
    install_cert.add_argument("--ca-file", help="the device CA the broker's certificate chains to (PEM)")
    install_cert.add_argument("--etc", default="/etc/lienwatch", help="config directory (pki/ below it)")
    install_cert.set_defaults(handler=lazy("edge.provision:run_install_cert"))

    probe = edge.add_parser("probe", help="Discover ECUs, supported OBD-II PIDs and the VIN.")
    probe.add_argument("--channel", required=True, help="CAN channel (e.g. can0, or ff11::1:2:3)")
    probe.add_argument("--interface", default="socketcan", help="python-can interface name")
    probe.add_argument("--bitrate", type=integer(1, 8_000_000), default=500_000,
                       help="bus bitrate in bit/s (socketcan)")
    probe.add_argument("--port", type=udp_port,
                       help="udp_multicast only: UDP port (default: python-can's 43113)")
    probe.add_argument("--timeout", type=number(0, 60), default=0.2, help="seconds to wait for ECU replies")
    probe.add_argument("--29bit", dest="extended_29bit", action="store_true",
                       help="29-bit OBD addressing (0x18DB33F1 / 0x18DAF1xx)")
    probe.set_defaults(handler=lazy("edge.sources.cli_handlers:edge_probe"))

    obd = add_group(commands, "obd", "Decode OBD-II (SAE J1979) responses.")
    decode = obd.add_parser("decode", help="Decode one OBD-II response, e.g. `41 0C 1A F8`.")
    decode.add_argument("hex", nargs="*", help="response bytes in hex")
    decode.add_argument("--list", action="store_true",
                        help="print every mode 01 PID this version decodes, field by field, "
                             "with its VSS path")
    decode.set_defaults(handler=lazy("edge.sources.cli_handlers:obd_decode"))

    gnss = add_group(commands, "gnss", "Read NMEA 0183 logs.")
    parse = gnss.add_parser("parse", help="Print one JSON object per GNSS epoch of an NMEA log.")
    parse.add_argument("file", help="NMEA log file, or - for stdin")
    parse.set_defaults(handler=lazy("edge.sources.cli_handlers:gnss_parse"))
