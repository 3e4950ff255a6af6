"""U+0000 in any string of any TOML file lienwatch reads (agent, receiver and API configs, HIL
scenarios, power profiles, UDS tables, DBC manifests, the signal catalog) is a typed error naming
the key, at load: not a failed connect, open or database write later (a receiver id with a NUL
made every write fail). Each shipped file is loaded once per string line, that one given a NUL."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.api.config import load_config as load_api_config
from cloud.config import load_config as load_receiver_config
from edge.agent.config import load_config as load_agent_config
from edge.power.profile import load_profile
from edge.sources.dbc import load_manifest
from edge.sources.uds.didtable import parse_table
from hil.scenario_file import load_scenario
from lienwatch.errors import LienwatchError
from lienwatch.tomlfile import NulInTomlError, parse_toml
from protocol.catalog import parse_catalog

ROOT = Path(__file__).resolve().parent.parent
# `key = "text"`, commented out or not (a commented key is uncommented with its NUL)
STRING_LINE = re.compile(r'^\s*#?\s*([A-Za-z_][\w.-]*\s*=\s*)"([^"\\]*)"(.*)$')

LOADERS: dict[str, Callable[[Path], object]] = {
    "deploy/api/api.toml": load_api_config,
    "deploy/receiver/receiver.toml": lambda path: load_receiver_config(path, check_tls=False),
    "deploy/agent.example.toml": load_agent_config,
    "hil/scenarios/night_tow.toml": load_scenario,
    "edge/power/profiles/tbox-reference.toml": lambda path: load_profile(str(path)),
    "edge/sources/uds/tables/example-bev.toml": lambda path: parse_table(path.read_text(), str(path)),
    "protocol/signals.toml": lambda path: parse_catalog(path.read_text()),
    "hil/vehicle_manifest.toml": load_manifest,
}


def _replaced(lines: list[str], number: int, line: str) -> str:
    return "\n".join([*lines[:number], line, *lines[number + 1:]]) + "\n"


def _mutants(text: str) -> list[tuple[int, str, str]]:
    """(line, key, the text with that line's string ending in a NUL) for each string line whose
    uncommenting alone still parses (a commented key not also set elsewhere)."""
    lines = text.splitlines()
    out = []
    for number, line in enumerate(lines):
        match = STRING_LINE.match(line)
        if not match:
            continue
        head, value, tail = match.groups()
        try:
            tomllib.loads(_replaced(lines, number, f'{head}"{value}"{tail}'))
        except tomllib.TOMLDecodeError:
            continue
        with_nul = _replaced(lines, number, f'{head}"{value}\\u0000"{tail}')
        out.append((number + 1, head.split("=")[0].strip(), with_nul))
    return out


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_nul_in_any_string_of_a_shipped_file_is_a_typed_error_naming_the_key(
        name: str, tmp_path: Path) -> None:
    source = ROOT / name
    load = LOADERS[name]
    copy = tmp_path / source.name
    copy.write_text(source.read_text())
    for sibling in source.parent.iterdir():  # files it names (a manifest's DBC)
        if sibling.is_file() and sibling != source and sibling.name in source.read_text():
            (tmp_path / sibling.name).write_bytes(sibling.read_bytes())
    load(copy)  # the file as shipped loads
    mutants = _mutants(source.read_text())
    assert mutants, f"{name} has no string lines to try"
    for line, key, text in mutants:
        copy.write_text(text)
        with pytest.raises(LienwatchError) as caught:
            load(copy)
        message = str(caught.value)
        assert "U+0000" in message and key.split(".")[-1] in message, (name, line, message)


def test_parse_toml_names_keys_array_items_and_nested_tables() -> None:
    assert parse_toml('a = "x"\n[b]\nc = ["y", "z"]\n') == {"a": "x", "b": {"c": ["y", "z"]}}
    for text, where in [('a = "x\\u0000"', "a"), ('[b]\nc = ["y", "\\u0000"]', "b.c[1]"),
                        ('[[t]]\nn = 1\n[[t]]\nn = "\\u0000"', "t[1].n"),
                        ('"k\\u0000" = 1', "k\\u0000"), ('d = { e = { f = "\\u0000" } }', "d.e.f")]:
        with pytest.raises(NulInTomlError, match=re.escape(where) + " holds U\\+0000"):
            parse_toml(text)
