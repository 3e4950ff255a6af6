"""Handler of `lienwatch cloud ingest --config FILE`: run one receiver until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from cloud.config import load_config
from cloud.ingest.receiver import Receiver


def run_ingest(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    receiver = Receiver(config)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        receiver.stopping.set()  # also ends a wait for an unreachable broker

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        receiver.start()
    except ConnectionError as error:
        if stop.is_set():
            return 0  # SIGTERM while waiting for the broker: nothing was received
        print(f"lienwatch: {error}", file=sys.stderr)
        return 1
    port = receiver.metrics.port
    print(f"receiver {config.name} ingesting from {config.mqtt.host}:{config.mqtt.port}"
          + (f"; metrics on http://{config.metrics.host}:{port}/metrics" if port else ""), flush=True)
    while not stop.wait(0.5):
        if receiver.failure is not None:
            break
    receiver.stop()  # graceful: flush, commit, acknowledge, disconnect
    if receiver.failure is not None:
        print(f"lienwatch: receiver failed: {receiver.failure}", file=sys.stderr)
        return 1
    totals = receiver.totals
    print(f"receiver {config.name} stopped: {totals.stored_messages} messages stored, "
          f"{sum(totals.rejected.values())} rejected, {sum(totals.duplicates.values())} duplicate rows",
          flush=True)
    return 0
