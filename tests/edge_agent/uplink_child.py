"""A process that appends numbered messages to the outbox and uplinks them (for the SIGKILL test).

    python -m tests.edge_agent.uplink_child QUEUE_DIR PORT CA CERT KEY DEVICE COUNT START

Prints `accepted N` once `append` returned for message N, and `drained` when the outbox is empty.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edge.uplink.mqtt import MqttLink, MqttSettings
from edge.uplink.queue import Channel, FlashQueue, Priority, QueueConfig
from edge.uplink.sender import DataBudget, Uplink


def main(argv: list[str]) -> int:
    queue_dir, port, ca, cert, key, device, count, start = argv
    outbox = FlashQueue(Path(queue_dir), QueueConfig(sync_interval_s=5.0))
    settings = MqttSettings(host="127.0.0.1", port=int(port), client_id=device, ca_file=Path(ca),
                            cert_file=Path(cert), key_file=Path(key), reconnect_min_s=0.05,
                            reconnect_max_s=0.3, loop_interval_s=0.01, inflight_window=8)
    link = MqttLink(settings)
    topics = {c: f"lienwatch/v1/{device}/up/{c.name.lower()}" for c in Channel}
    uplink = Uplink(outbox, link, topics, DataBudget(10**9))
    link.start()
    for number in range(int(start), int(start) + int(count)):
        priority = Priority.ALERT if number % 10 == 0 else Priority.TELEMETRY
        outbox.append(f"msg-{number}".encode(), priority=priority,
                      channel=Channel.EVENT if priority else Channel.TELEMETRY)
        print(f"accepted {number}", flush=True)
        uplink.pump()
        time.sleep(0.003)
    while outbox.depth:
        uplink.pump()
        outbox.tick()
        time.sleep(0.01)
    outbox.close()
    link.stop()
    print("drained", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
