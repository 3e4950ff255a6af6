"""Headless Debian Chromium driven by Selenium through Debian's chromedriver, an ASGI app served
by uvicorn on a free loopback port, and where the screenshots go.

Screenshots are test artefacts in build/test-artifacts/console/ (LIENWATCH_ARTIFACTS overrides
the directory); each test names its files after the page it shows.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.conftest import IN_CI

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
_DEFAULT_ARTIFACTS = Path(__file__).parents[2] / "build" / "test-artifacts"
ARTIFACTS = Path(os.environ.get("LIENWATCH_ARTIFACTS", _DEFAULT_ARTIFACTS)) / "console"
# Chromium without the flags that make it call home (refused here, and slow to time out).
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update",
                  "--disable-sync", "--disable-default-apps", "--disable-extensions", "--mute-audio",
                  "--window-size=1400,1000", "--lang=en-US")


def _missing(what: str) -> None:
    message = f"{what} is missing: `make system-deps` installs Debian's chromium and chromium-driver"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium session (selenium WebDriver) with its own empty profile."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        _missing("chromium")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium")
    profile = tempfile.mkdtemp(prefix="lienwatch-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def screenshot(driver: Any, name: str) -> Path:
    """Save the browser's window as build/test-artifacts/console/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout_s: float = 20, what: str = "") -> Any:
    """Poll a condition on the driver until it is truthy (short polling, bounded). An element the
    console re-rendered between finding and reading it (stale) is polled again, not an error."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, what)


def text_of(driver: Any, css: str, what: str, *, has: tuple[str, ...] = ()) -> str:
    """The text of the first element `css` matches once it holds each of `has`, found and read in
    the same poll: the console re-renders panels as answers arrive, and an element found in one
    step and read in the next may be gone (StaleElementReferenceException)."""
    def read(d: Any) -> list[str] | None:
        found = d.find_elements("css selector", css)
        text = found[0].text if found else None
        return [text] if text is not None and all(part in text for part in has) else None

    text: str = wait_for(driver, read, what=what)[0]
    return text


_REFUSED = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")


def page_errors(driver: Any) -> list[str]:
    """Errors the page logged (failed module imports, uncaught exceptions, 5xx answers); the API's
    4xx refusals, which the console shows as such, are not errors of the page."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and not _REFUSED.search(entry["message"])]
