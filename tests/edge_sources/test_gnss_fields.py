"""edge/sources/gnss/fields.py against pynmeagps, its oracle: the same fields, names and values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pynmeagps
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pynmeagps import NMEAReader

from edge.sources.gnss.fields import decode
from edge.sources.gnss.nmea import SENTENCES, make_sentence
from hil.gnss import NmeaEpoch, default_sats, drive, epoch_sentences, quirky_log

from .conftest import EXAMPLES

START = dt.datetime(2026, 3, 14, 9, 27, 25, tzinfo=dt.UTC)
EXTRA = [  # empty fields, the southern and western hemispheres, short GSV, odd times
    "GNRMC,092725.00,V,,,,,,,140326,,,N,V", "GNGGA,092725.00,,,,,0,00,99.99,,,,,,", "GNVTG,,T,,M,,N,,K,N",
    "GPGGA,235959,3351.1234,S,15112.5678,W,2,12,0.7,12.5,M,-20.1,M,1.2,0042",
    "GPGSV,3,3,09,21,05,300,", "GPGSV,3,1,11,03,03,111,00,04", "GNGSA,A,3,01,02,,,,,,,,,,,1.5,0.9,1.2",
    "GNGLL,4717.11364,N,00833.91565,E,092321.00,A,A", "GPGLL,3351.1234,S,15112.5678,W,235959,V,N",
    "GNGLL,,,,,,V,N",
    "GNZDA,092725.5,14,03,2026,00,00", "GNGST,092725.00,1.2,,,,0.8,0.6,1.5", "GNRMC,0927,A,,,,,,,,,,,",
]


def _sentences() -> list[str]:
    lines = [s for e in drive(START, 30) for s in epoch_sentences(e)]
    lines += quirky_log(START, 12) + [make_sentence(body) for body in EXTRA]
    lines += (EXAMPLES / "drive_quirks.nmea").read_text("latin-1").splitlines()
    return [line for line in lines if line.startswith("$") and line[3:6] in SENTENCES]


def _oracle(line: str) -> dict[str, Any] | None:
    try:
        msg = NMEAReader.parse(line.encode("latin-1") + b"\r\n", validate=pynmeagps.VALNONE)
    except Exception:  # pynmeagps raises several types on bad fields
        return None
    if msg is None:
        return None
    values = {name: getattr(msg, name) for name in vars(msg) if not name.startswith("_")}
    try:  # pynmeagps keeps hex ids as text, even text that is not hex (the assembler's int() failed)
        return {k: (None if v == "" else int(v, 16) if k in ("systemId", "signalID") else v)
                for k, v in values.items()}
    except ValueError:
        return None


def _ours(line: str) -> dict[str, Any] | None:
    body = line[1:line.rindex("*")]
    try:
        return decode(body[2:5], body[6:])
    except ValueError:
        return None


def test_every_sentence_of_the_hil_receiver_and_the_examples_decodes_as_pynmeagps_does() -> None:
    lines = _sentences()
    assert len(lines) > 500
    compared = 0
    for line in lines:
        if "*" not in line:
            continue
        expected, got = _oracle(line), _ours(line)
        assert (expected is None) == (got is None), line
        if got is not None and expected is not None:
            assert {k: v for k, v in got.items() if k in expected} == \
                {k: v for k, v in expected.items() if k in got}, line
            compared += 1
    assert compared > 500


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_sentences_decode_as_pynmeagps_does_when_both_accept(data: st.DataObject) -> None:
    lines = epoch_sentences(NmeaEpoch(time=START, sats=default_sats()))
    body = data.draw(st.sampled_from(lines))[1:-3]
    position = data.draw(st.integers(6, len(body) - 1))
    char = data.draw(st.sampled_from("0123456789.,-+eEAN "))
    line = make_sentence(body[:position] + char + body[position + 1:])
    got, expected = _ours(line), _oracle(line)
    if got is not None and expected is not None:
        assert {k: v for k, v in got.items() if k in expected} == \
            {k: v for k, v in expected.items() if k in got}, line


@pytest.mark.parametrize("body", ["GNGGA,092725.00,4717.1,N,00833.9,E,x,08,1.0,1,M,1,M,,",
                                  "GNGSA,A,3,01,zz,,,,,,,,,,,1.5,0.9,1.2", "GNGSV,1,1,01,03,aa,111,40"])
def test_a_field_that_is_not_a_number_is_a_value_error(body: str) -> None:
    with pytest.raises(ValueError):
        decode(body[2:5], body[6:])
