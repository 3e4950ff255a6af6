"""`lienwatch demo --serve`: after the drive, the console is served on the demo's data and its URL
and an admin key are printed; the browser shows the demo car; Ctrl-C stops everything."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import httpx
import pytest

from tests.console.browser import chromium, page_errors, screenshot, text_of, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_demo_serve_prints_the_console_url_and_serves_the_demo_car() -> None:
    demo = subprocess.Popen([sys.executable, "-m", "lienwatch", "demo", "--seconds", "4", "--serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if "console: " in line:
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(240), "".join(lines)[-3000:]
        line = next((x for x in lines if "console: " in x), None)
        assert line is not None, "".join(lines)[-3000:]
        url = line.split("console: ", 1)[1].split()[0]
        token = line.split("API key: ", 1)[1].strip().rstrip(")")
        me = httpx.get(url.replace("/console/", "/me"), headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["role"] == "admin"
        with chromium() as driver:
            driver.get(url)
            key = wait_for(driver, lambda d: d.find_elements("name", "api_key"), what="the sign-in form")[0]
            key.send_keys(token)
            driver.find_element("id", "sign-in").click()
            wait_for(driver, lambda d: "demo (admin)" in d.find_element("id", "who").text, what="signed in")
            driver.get(url + "#/devices")
            car = "#devices tr[data-device='demo-car-1']"
            wait_for(driver, lambda d: d.find_elements("css selector", car), what="the demo car in the list")
            screenshot(driver, "05-demo-devices")
            driver.get(url + "#/device/demo-car-1")
            text_of(driver, "#device-state", "the demo car's supply voltage", has=("V",))
            screenshot(driver, "06-demo-device")
            assert page_errors(driver) == []
    finally:
        demo.send_signal(signal.SIGINT)
        rc = demo.wait(60)
        reader.join(10)
    assert rc == 0, "".join(lines)[-3000:]
    assert any("API stopped" in x for x in lines)
