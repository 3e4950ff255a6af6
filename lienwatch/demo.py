"""`lienwatch demo`: run what exists of the pipeline on embedded defaults.

Starts its own PostgreSQL and mosquitto on free loopback ports, drives the stages that have
landed, prints what happened in words a user can read, and stops everything again.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

_STEPS_HELP = "Run the pipeline end to end on embedded local services (nothing to install)."


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help=_STEPS_HELP, description=_STEPS_HELP)
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    import psycopg
    from paho.mqtt.enums import CallbackAPIVersion

    from lienwatch.services import local_services
    from protocol.catalog import default_catalog

    say = _Say()
    say("starting an embedded PostgreSQL and a mosquitto broker on free loopback ports ...")
    with local_services() as (pg, broker):
        with psycopg.connect(pg.dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        say(f"PostgreSQL {row[0] if row else '?'} is up at {pg.dsn}")
        received = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = lambda *_: received.set()
        client.connect("127.0.0.1", broker.port)
        client.subscribe("lienwatch/demo/#", qos=1)
        client.loop_start()
        time.sleep(0.2)
        client.publish("lienwatch/demo/hello", b"ping", qos=1).wait_for_publish(5)
        ok = received.wait(5)
        client.loop_stop()
        client.disconnect()
        say(f"mosquitto on 127.0.0.1:{broker.port} delivered a QoS 1 round trip: {ok}")
        catalog = default_catalog()
        say(f"signal catalog v{catalog.version}: {len(catalog.signals)} VSS signals, e.g. "
            f"{catalog.by_id(1).path} = id 1")
        if not ok:
            return 1
    say("stopped both servers; demo finished")
    return 0


class _Say:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.2f}s] {text}", file=sys.stdout, flush=True)
