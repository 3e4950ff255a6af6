"""Golden vectors: the committed .cbor/.json files match this code in both directions, byte for byte."""

from __future__ import annotations

import pytest

import protocol
from protocol import golden, jsonform

NAMES = sorted(golden.EXAMPLES)


def test_every_message_kind_has_a_vector():
    kinds = {jsonform.loads((golden.VECTOR_DIR / f"{name}.json").read_text())
             .__class__.__name__ for name in NAMES}
    assert kinds == {"TelemetryBatch", "Event", "Status", "CommandAck", "SignedCommand", "Config",
                     "StoredReceipt"}


@pytest.mark.parametrize("name", NAMES)
def test_json_encodes_to_the_committed_cbor(name):
    message = jsonform.loads((golden.VECTOR_DIR / f"{name}.json").read_text())
    assert protocol.encode(message) == (golden.VECTOR_DIR / f"{name}.cbor").read_bytes()


@pytest.mark.parametrize("name", [*NAMES, *golden.DEFLATED, *golden.LEGACY])
def test_cbor_decodes_to_the_committed_json(name):
    decoded = protocol.decode((golden.VECTOR_DIR / f"{name}.cbor").read_bytes())
    assert jsonform.dumps(decoded) == (golden.VECTOR_DIR / f"{name}.json").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_the_examples_still_produce_the_committed_vectors(name):
    assert protocol.encode(golden.EXAMPLES[name]()) == (golden.VECTOR_DIR / f"{name}.cbor").read_bytes()


def test_deflated_vector_is_smaller_and_equal_in_content():
    plain = protocol.decode((golden.VECTOR_DIR / "telemetry.cbor").read_bytes())
    deflated = (golden.VECTOR_DIR / "telemetry_deflate.cbor").read_bytes()
    assert protocol.decode(deflated) == plain


def test_signed_vector_verifies_with_the_test_key():
    from protocol import signing
    from protocol.messages import SignedCommand

    signed = protocol.decode((golden.VECTOR_DIR / "command.cbor").read_bytes())
    assert isinstance(signed, SignedCommand)
    public = signing.private_key_from_bytes(golden.TEST_SIGNING_SEED).public_key()
    command = signing.verify_command(signed, [public], device_id="veh-0001", now_ns=golden.T0 + 10**9,
                                     replay_cache=signing.ReplayCache())
    assert command == signed.command


def test_check_mode_reports_a_changed_vector(tmp_path, monkeypatch):
    monkeypatch.setattr(golden, "VECTOR_DIR", tmp_path)
    golden.write_vectors(tmp_path)
    assert golden.main(["--check"]) == 0
    (tmp_path / "event.cbor").write_bytes(b"\x00")
    assert golden.main(["--check"]) == 1


def test_a_version_1_0_event_still_decodes_as_raised():
    from protocol.messages import Event, Transition

    old = protocol.decode((golden.VECTOR_DIR / "event_v1_0.cbor").read_bytes())
    assert isinstance(old, Event) and old.transition is Transition.RAISED
    assert old.raised_ns is None and old.condition == ""
    assert old == golden.event()  # 1.0 bytes mean what the 1.1 example means
