"""The console as files and as an app: shipped in the package, served at /console with its own
content security policy, its [console] settings checked, and in a browser on an API that lacks
the endpoints a panel needs (the panel says so, the page does not break)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.console import STATIC_DIR, ConsoleConfig, console_app, mount_console, parse_console_config
from lienwatch.errors import ConfigError
from tests.console.browser import chromium, page_errors, screenshot, serving, text_of, wait_for

IMPORT = re.compile(r"""^import\s+(?:[\w*{}\s,]+\s+from\s+)?['"](\./[\w./-]+)['"];""", re.M)


def test_every_module_import_resolves_to_a_shipped_file() -> None:
    modules = sorted((STATIC_DIR / "js").glob("*.js"))
    names = {m.name for m in modules}
    assert names >= {"main.js", "api.js", "map.js", "inbox.js", "trackview.js", "device.js", "fleet.js"}
    for module in modules:
        for target in IMPORT.findall(module.read_text("utf-8")):
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports missing {target}"
    index = (STATIC_DIR / "index.html").read_text("utf-8")
    assert 'src="js/main.js"' in index and "http" not in index  # nothing from a CDN


def test_package_data_ships_the_static_files() -> None:
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text("utf-8")
    line = next(line for line in text.splitlines() if line.startswith('"cloud.console"'))
    globs = re.findall(r'"(static/[^"]+)"', line)
    shipped = {p for g in globs for p in STATIC_DIR.parent.glob(g)}
    wanted = {p for p in STATIC_DIR.rglob("*") if p.suffix in {".html", ".css", ".js"}}
    assert wanted and wanted <= shipped


def test_console_is_served_with_its_own_policy_and_settings() -> None:
    app = FastAPI()
    tiles = "http://127.0.0.1:8081/{z}/{x}/{y}.png"
    mount_console(app, ConsoleConfig(tile_url=tiles, tile_attribution="bench tiles"))
    with TestClient(app) as client:
        redirect = client.get("/console", follow_redirects=False)
        assert redirect.status_code == 308 and redirect.headers["location"] == "/console/"
        page = client.get("/console/")
        assert page.status_code == 200 and "lienwatch console" in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "img-src 'self' data: http://127.0.0.1:8081" in policy
        module = client.get("/console/js/main.js")
        assert module.headers["content-type"].startswith("text/javascript")
        settings = client.get("/console/config.json").json()
        assert settings == {"tile_url": tiles, "tile_attribution": "bench tiles"}
        assert client.get("/console/js/nothing.js").status_code == 404
        assert client.get("/console/..%2F__init__.py").status_code == 404
        schema = client.get("/openapi.json").json()
        assert not any(path.startswith("/console") for path in schema["paths"])


@pytest.mark.parametrize(("section", "message"), [
    ("not a table", "console must be a table"),
    ({"tile_url": 5}, "console.tile_url must be a string"),
    ({"tiles": "x"}, "unknown key 'tiles'"),
    ({"tile_url": "ftp://x/{z}/{x}/{y}"}, "http\\(s\\) URL template"),
    ({"tile_url": "http://x/tiles.png"}, "with \\{z\\}, \\{x\\} and \\{y\\}"),
    ({"tile_url": "http://x/{z}/{x}/{y}.png\" onerror=\""}, "URL template"),
    ({"tile_attribution": "a\nb"}, "printable"),
])
def test_console_settings_refuse_garbage(section: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_console_config(section)


def test_console_settings_default_to_the_offline_grid() -> None:
    assert parse_console_config(None) == ConsoleConfig()
    assert ConsoleConfig().tile_origin() == ""
    assert "img-src 'self' data:;" in _policy(ConsoleConfig())


def _policy(config: ConsoleConfig) -> str:
    from cloud.console import content_security_policy

    return content_security_policy(config)


def test_panels_without_their_endpoint_say_so_in_the_browser() -> None:
    """On an app that documents no console endpoint, signing in shows the inbox as unavailable."""
    app = FastAPI()
    app.mount("/console", console_app())
    with serving(app) as base, chromium() as driver:
        driver.get(f"{base}/console/")
        key = wait_for(driver, lambda d: d.find_elements("name", "api_key"), what="the sign-in form")[0]
        screenshot(driver, "00-sign-in")
        key.send_keys("lw_000000000000_not-a-real-key")
        driver.find_element("id", "sign-in").click()
        panel = text_of(driver, "[data-unavailable='Alert inbox']", "the inbox's unavailable panel",
                        has=("the API does not offer GET /events",))
        assert "the API does not offer GET /events" in panel
        assert "does not say who you are" in text_of(driver, "#notice", "the notice",
                                                     has=("does not say who you are",))
        screenshot(driver, "01-degraded-no-api")
        assert page_errors(driver) == []


def test_the_api_config_carries_the_console_section() -> None:
    from cloud.api.config import parse_config

    dsn = {"dsn": "host=127.0.0.1 dbname=lienwatch"}
    tiles = "https://tiles.example.org/{z}/{x}/{y}.png"
    assert parse_config({"database": dsn, "console": {"tile_url": tiles}}).console.tile_url == tiles
    assert parse_config({"database": dsn}).console == ConsoleConfig()
    with pytest.raises(ConfigError, match=r"console\.tile_url"):
        parse_config({"database": dsn, "console": {"tile_url": "tiles.png"}})


def test_the_api_example_config_shows_the_console_defaults() -> None:
    from cloud.api.config import load_config

    example = Path(__file__).parents[2] / "deploy" / "api" / "api.toml"
    assert "[console]" in example.read_text("utf-8")
    assert load_config(example).console == ConsoleConfig()
