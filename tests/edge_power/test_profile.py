"""Board power profiles: the reference profile is complete and sourced; bad files are refused."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from edge.power.profile import PARTS, ProfileError, builtin_profiles, load_profile, parse_profile

REFERENCE = resources.files("edge.power").joinpath("profiles", "tbox-reference.toml")


def _reference() -> dict[str, Any]:
    return tomllib.loads(REFERENCE.read_text(encoding="utf-8"))


def test_reference_profile_loads_with_every_part() -> None:
    profile = load_profile("tbox-reference")
    assert set(profile.parts) == set(PARTS)
    assert "tbox-reference" in builtin_profiles()
    assert profile.parts["soc"].ma("active") > profile.parts["soc"].ma("suspend") > 0


def test_every_figure_of_the_reference_profile_names_its_source() -> None:
    """Each numeric key sits under a comment block (or carries one) that names a document."""
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    source_words = re.compile(r"data ?sheet|DS\d+|Hardware Design|application note|UBX-|IS-GPS|"
                              r"assumption|derived|label|same note|same data sheet|TS 23", re.IGNORECASE)
    comment_block: list[str] = []
    unsourced = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            comment_block = []
            continue
        if stripped.startswith("#"):
            comment_block.append(stripped)
            continue
        if not stripped:
            continue
        key, _, value = stripped.partition("=")
        if re.match(r"\s*-?[\d.]+", value.split("#")[0]) and key.strip() not in ("supply_nominal_v",):
            context = " ".join(comment_block) + " " + value
            if not source_words.search(context):
                unsourced.append(key.strip())
        elif "#" not in stripped:
            comment_block = [] if key.strip() in ("name", "description") else comment_block
    assert not unsourced, f"figures without a named source: {unsourced}"


def test_battery_current_sums_parts_through_the_regulator() -> None:
    profile = load_profile("tbox-reference")
    states = {"soc": "active", "mcu": "stop", "modem": "off", "gnss": "off", "can": "sleep", "accel": "off"}
    soc = profile.parts["soc"]
    rail_mw = soc.ma("active") * soc.rail_v + profile.parts["mcu"].ma("stop") * profile.parts["mcu"].rail_v \
        + profile.parts["accel"].ma("off") * profile.parts["accel"].rail_v
    expected = (rail_mw / profile.regulator.efficiency_heavy / 12.0 + profile.parts["can"].ma("sleep")
                + profile.regulator.quiescent_ma)
    assert profile.battery_ma(states) == pytest.approx(expected)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["soc"].pop("active_ma"), "soc.active_ma must be a number"),
    (lambda d: d["soc"].__setitem__("active_ma", -1), "soc.active_ma must be finite"),
    (lambda d: d["soc"].__setitem__("active_ma", "82"), "must be a number, got str"),
    (lambda d: d["modem"].__setitem__("psm_ma", float("nan")), "modem.psm_ma must be finite"),
    (lambda d: d["regulator"].__setitem__("efficiency_heavy", 1.5), "efficiency_heavy must be finite"),
    (lambda d: d["regulator"].__setitem__("efficiency_light", 0), "efficiency_light must be finite, > 0"),
    (lambda d: d["gnss"].__setitem__("ttff_hot_s", True), "must be a number, got bool"),
    (lambda d: d["gnss"].__setitem__("tracking_amps", 1), "unknown key(s) tracking_amps"),
    (lambda d: d.pop("accel"), "missing table [accel]"),
    (lambda d: d.__setitem__("accel", 3), "missing table [accel]"),
    (lambda d: d["can"].__setitem__("direct", "yes"), "can.direct must be true or false"),
    (lambda d: d.__setitem__("name", ""), "name must be a non-empty string"),
    (lambda d: d.__setitem__("extra", {}), "unknown key(s) extra"),
    (lambda d: d["backup_cell"].__setitem__("cutoff_v", 4.0), "cutoff_v must be below nominal_v"),
    (lambda d: d["accel"].__setitem__("wake_odr_hz", 0), "wake_odr_hz must be finite, > 0"),
])
def test_bad_figures_are_refused_naming_the_key(mutate: Any, message: str) -> None:
    data = _reference()
    mutate(data)
    with pytest.raises(ProfileError, match=re.escape(message)):
        parse_profile(data)


def test_unreadable_and_garbage_files_are_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read power profile"):
        load_profile(str(tmp_path / "missing.toml"))
    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(b"\xff\xfe[[[ not toml")
    with pytest.raises(ProfileError):
        load_profile(str(garbage))
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(str(broken))
    with pytest.raises(ProfileError, match="unknown power profile 'nope'"):
        load_profile("nope")


def test_unknown_state_is_a_profile_error() -> None:
    profile = load_profile("tbox-reference")
    with pytest.raises(ProfileError, match="no state 'hibernate'"):
        profile.parts["soc"].ma("hibernate")
