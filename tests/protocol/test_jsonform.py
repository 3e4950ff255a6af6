"""The JSON form: every message round-trips through it, and any JSON document at all becomes a
message or a ProtocolError (it is the CLI's input boundary)."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from protocol import golden, jsonform
from tests.protocol import strategies as s

VECTOR_JSON = [json.loads((golden.VECTOR_DIR / f"{name}.json").read_text())
               for name in sorted(golden.EXAMPLES)]


@settings(max_examples=100, deadline=None)
@given(s.messages)
def test_json_form_round_trips(message):
    decoded = protocol.decode(protocol.encode(message))
    assert jsonform.loads(jsonform.dumps(decoded)) == decoded


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400) | st.floats()
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)


def encode_or_refuse(document: object) -> None:
    try:
        message = jsonform.from_json(document)
        protocol.encode(message)
    except protocol.ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VECTOR_JSON), st.data())
def test_any_value_in_any_json_field_is_a_message_or_a_protocol_error(document, data):
    document = json.loads(json.dumps(document))
    target = document
    path = data.draw(st.lists(st.integers(0, 20), max_size=3))
    for step in path:  # walk a few levels down into the document
        if isinstance(target, dict) and target:
            key = sorted(target)[step % len(target)]
            if isinstance(target[key], dict | list) and target[key]:
                target = target[key]
                continue
        break
    if isinstance(target, dict) and target:
        target[sorted(target)[data.draw(st.integers(0, 50)) % len(target)]] = data.draw(json_values)
    elif isinstance(target, list) and target:
        target[data.draw(st.integers(0, 50)) % len(target)] = data.draw(json_values)
    encode_or_refuse(document)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_is_a_message_or_a_protocol_error(document):
    encode_or_refuse(document)


def test_numbers_beyond_float_are_protocol_errors():
    cases = (("event", ("features", "x")), ("status", ("supply_v",)), ("telemetry", ("fixes", "lat_deg")))
    for name, path in cases:
        document = json.loads((golden.VECTOR_DIR / f"{name}.json").read_text())
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = [10**400] * 10 if name == "telemetry" else 10**400
        try:
            jsonform.from_json(document)
        except protocol.ProtocolError as error:
            assert "out of range" in str(error)
        else:
            raise AssertionError(f"{name}: a number beyond float range was accepted")


def test_huge_numbers_and_bad_text_are_protocol_errors():
    for text in ('{"kind": "event"', "[1, 2", '{"kind": "config", "config_version": 1, "settings": {"a": 1}}',
                 '{"kind": "event", "features": {"x": 1' + "0" * 400 + "}}", "[" * 100_000, "1e999"):
        with contextlib.suppress(protocol.ProtocolError):
            message = jsonform.loads(text)
            protocol.encode(message)
