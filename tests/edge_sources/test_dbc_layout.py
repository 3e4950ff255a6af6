"""Compiled DBC layouts decode exactly as cantools does, and compiling can run in a child process."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import cantools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sources.dbc_layout import (
    FrameDecodeError,
    compile_dbc,
    compile_dbc_isolated,
    layouts_from_json,
    layouts_to_json,
    signal_bits,
)
from lienwatch.errors import ConfigError

from .conftest import REPO

FACTORS = ["1", "0.1", "0.5", "2", "0.001", "3", "1.5"]
OFFSETS = ["0", "-40", "1.5", "100"]


@st.composite
def dbc_messages(draw: st.DrawFn) -> tuple[str, int]:
    """A DBC text with one message of random Intel/Motorola, signed, float and multiplexed signals."""
    length = draw(st.integers(1, 8))
    bits = 8 * length
    used = 0
    lines: list[str] = []
    valtypes: list[str] = []
    multiplexed = draw(st.booleans()) and length >= 2
    if multiplexed:
        lines.append(' SG_ Mux M : 0|2@1+ (1,0) [0|3] "" GW')
        used |= 0b11
        listed = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True))
    for i in range(draw(st.integers(1, 6))):
        is_float = draw(st.booleans()) and bits >= 32 and draw(st.booleans())
        float_sizes = [32, 64] if bits >= 64 else [32]
        size = draw(st.sampled_from(float_sizes)) if is_float else draw(st.integers(1, 16))
        little = draw(st.booleans())
        start = draw(st.integers(0, bits - 1))
        mask = signal_bits(start, size, "little_endian" if little else "big_endian")
        if mask >> bits or mask & used:
            continue
        used |= mask
        signed = "-" if draw(st.booleans()) and not is_float else "+"
        mux = f" m{draw(st.sampled_from(listed))}" if multiplexed and draw(st.booleans()) else ""
        factor, offset = draw(st.sampled_from(FACTORS)), draw(st.sampled_from(OFFSETS))
        lines.append(f' SG_ S{i}{mux} : {start}|{size}@{1 if little else 0}{signed} ({factor},{offset}) '
                     f'[0|0] "" GW')
        if is_float:
            valtypes.append(f"SIG_VALTYPE_ 512 S{i} : {1 if size == 32 else 2};")
    text = "\n".join(['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_: ECU GW", "",
                      f"BO_ 512 Frame: {length} ECU", *lines, "", *valtypes, ""])
    return text, length


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in
               ((a[k], b[k]) for k in a))


@settings(max_examples=300, deadline=None)
@given(dbc_messages(), st.data())
def test_layout_decoding_equals_cantools(tmp_path_factory: pytest.TempPathFactory,
                                         message: tuple[str, int], data: st.DataObject) -> None:
    text, length = message
    path = tmp_path_factory.mktemp("dbc") / "random.dbc"
    path.write_text(text)
    db: Any = cantools.database.load_file(str(path))
    oracle = db.get_message_by_name("Frame")
    layout = compile_dbc(path)["Frame"]
    decoder = layout.decoder([s.name for s in layout.signals])
    for _ in range(20):
        size = data.draw(st.sampled_from([length, length, length, length - 1, length + 1]))
        payload = data.draw(st.binary(min_size=max(size, 0), max_size=max(size, 0)))
        try:
            expected = oracle.decode(payload, decode_choices=False, allow_excess=False)
        except cantools.database.DecodeError:
            with pytest.raises(FrameDecodeError):
                decoder.decode(payload)
            continue
        got = decoder.decode(payload)
        assert _same(got, expected), (text, payload.hex(), got, expected)


def test_a_decoder_for_some_signals_returns_those_and_checks_the_multiplexer(tmp_path: Path) -> None:
    path = tmp_path / "mux.dbc"
    path.write_text('VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: ECU\n\nBO_ 512 Frame: 2 ECU\n'
                    ' SG_ Mux M : 0|2@1+ (1,0) [0|3] "" ECU\n'
                    ' SG_ A m1 : 8|8@1+ (1,0) [0|255] "" ECU\n'
                    ' SG_ B : 2|6@1+ (1,0) [0|63] "" ECU\n')
    decoder = compile_dbc(path)["Frame"].decoder(["B"])
    assert decoder.decode(bytes([0b000101_01, 7])) == {"Mux": 1, "B": 5}
    with pytest.raises(FrameDecodeError, match="multiplexer Mux = 2"):
        decoder.decode(bytes([0b000101_10, 7]))
    for size in (0, 1, 3, 8):  # a DLC other than the message's 2 bytes: refused, not cut or padded
        with pytest.raises(FrameDecodeError, match=f"wrong data size: {size} instead of 2"):
            decoder.decode(bytes([0b000101_01, 7, 0, 0, 0, 0, 0, 0])[:size])


def test_layouts_survive_json_and_the_child_process_compiles_the_same(tmp_path: Path) -> None:
    hil = REPO / "hil" / "vehicle.dbc"
    layouts = compile_dbc(hil)
    assert layouts_from_json(layouts_to_json(layouts)) == layouts
    assert compile_dbc_isolated(hil) == layouts


def test_a_broken_dbc_is_a_config_error_in_the_child_too(tmp_path: Path) -> None:
    (tmp_path / "garbage.dbc").write_bytes(b"BO_ 12 \xff\xfe garbage : : ;\n" * 3)
    with pytest.raises(ConfigError, match="does not parse"):
        compile_dbc_isolated(tmp_path / "garbage.dbc")
    with pytest.raises(ConfigError, match="cannot read DBC"):
        compile_dbc_isolated(tmp_path / "missing.dbc")
    child = subprocess.run([sys.executable, "-m", "edge.sources.dbc_layout", str(tmp_path / "garbage.dbc")],
                           capture_output=True, text=True, check=False)
    assert child.returncode == 2 and "does not parse" in child.stderr and child.stdout == ""


def test_the_agent_builds_a_dbc_source_without_loading_cantools() -> None:
    script = (
        "import sys\n"
        "from edge.sources.registry import build_source\n"
        f"source = build_source({{'kind': 'dbc', 'manifest': {str(REPO / 'hil' / 'vehicle_manifest.toml')!r},"
        " 'interface': 'virtual', 'channel': 'layout-test'})\n"
        "print(sorted(source.decoder.manifest.layouts), 'cantools' in sys.modules)\n"
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           cwd=REPO)
    assert child.stdout.split() == ["[944,", "960,", "1184,", "1185]", "False"]
