"""`[api] workers` > 1: several uvicorn worker processes on one listening socket.

One Python process answers on one core at a time (the GIL), so a host with more cores than one
runs a process per core. What the processes share lives outside them: the rate-limit buckets in
PostgreSQL (`SharedRateLimiter`, migration 0012), the Prometheus metrics in files under a run
directory that /metrics sums (prometheus_client's multiprocess mode), and the jobs that must run
once (watchers, command sweeper) behind advisory locks (`cloud.store.db.exclusive`). Each worker
has its own pool (`pool_max_size` each) and its own MQTT client (the client id gets its pid).
uvicorn's supervisor starts the workers, restarts one that dies and stops them on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cloud.api.config import ApiConfig

CONFIG_ENV = "LIENWATCH_API_CONFIG"  # the config file each worker loads
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess directory


def app_from_environment() -> FastAPI:
    """The app of one worker process (uvicorn's factory): the config file named by the environment."""
    from cloud.api.app import create_app
    from cloud.api.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(load_config(os.environ[CONFIG_ENV]))


def serve_workers(config_path: str | Path, config: ApiConfig) -> None:
    """Serve the API from `config.workers` processes on [api] host:port until interrupted."""
    import uvicorn

    run_dir = Path(tempfile.mkdtemp(prefix="lienwatch-api-"))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    os.environ[METRICS_ENV] = str(metrics_dir)
    try:
        uvicorn.run(
            "cloud.api.workers:app_from_environment",
            factory=True,
            workers=config.workers,
            host=config.host,
            port=config.port,
            log_level="info",
            access_log=config.access_log,
            http="httptools",
            proxy_headers=False,
            server_header=False,
            date_header=True,
        )
    finally:
        os.environ.pop(METRICS_ENV, None)
        shutil.rmtree(run_dir, ignore_errors=True)
