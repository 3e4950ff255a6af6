"""Every message kind survives encode → decode unchanged, and decode refuses what it must."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest

import protocol
from protocol import errors
from protocol.messages import (
    ClearGeofence,
    Command,
    Geofence,
    Reboot,
    RequestPosition,
    SetGeofence,
    SignedCommand,
    StartDiagnosticSession,
    StopDiagnosticSession,
    TelemetryBatch,
)
from tests.protocol import messages_fixture as mf


@pytest.mark.parametrize("make", [mf.batch, mf.event, mf.status, mf.ack, mf.config])
def test_message_round_trips(make):
    message = make()
    assert protocol.decode(protocol.encode(message)) == message


def test_deflated_batch_round_trips_and_is_marked():
    message = mf.batch(60)
    data = protocol.encode(message, deflate=True)
    assert cbor2.loads(data)[3][9] == 1 and len(data) < len(protocol.encode(message))
    assert protocol.decode(data) == message


def test_deflate_is_skipped_when_it_does_not_pay():
    message = mf.batch(1)
    assert protocol.encode(message, deflate=True) == protocol.encode(message)


def test_batch_without_fixes_or_samples_round_trips():
    for message in (TelemetryBatch(mf.HEADER), mf.batch(1),
                    dataclasses.replace(mf.batch(), samples=protocol.SampleColumns()),
                    dataclasses.replace(mf.batch(), fixes=protocol.FixColumns())):
        assert protocol.decode(protocol.encode(message)) == message


@pytest.mark.parametrize("action", [
    RequestPosition(), SetGeofence(Geofence(3, 47.5, 8.25, 250.0)), ClearGeofence(3), ClearGeofence(None),
    Reboot(), StartDiagnosticSession(600), StopDiagnosticSession(),
])
def test_every_command_action_round_trips(action):
    command = dataclasses.replace(mf.command(), action=action)
    decoded = protocol.decode(protocol.encode(command))
    assert isinstance(decoded, SignedCommand)
    assert decoded.command == command and decoded.signature is None


def test_decoded_fix_values_are_the_decimal_values_sent():
    decoded = protocol.decode(protocol.encode(mf.batch()))
    assert isinstance(decoded, TelemetryBatch)
    assert decoded.fixes.lat_deg[0] == 47.3769 and decoded.fixes.speed_kmh[0] == 48.25
    assert decoded.samples.value == (48.25, 12.345, 49.0, 1.0)


def test_heading_just_below_360_wraps_to_0():
    columns = dataclasses.replace(mf.fixes(2), heading_deg=(359.97, 0.5))
    decoded = protocol.decode(protocol.encode(dataclasses.replace(mf.batch(2), fixes=columns)))
    assert isinstance(decoded, TelemetryBatch)
    assert decoded.fixes.heading_deg == (0.0, 0.5)


def test_unknown_major_version_is_refused_with_a_clear_reason():
    data = cbor2.dumps([2, 1, [], {}])
    with pytest.raises(errors.UnsupportedVersionError, match="version 2"):
        protocol.decode(data)


def test_unknown_kind_is_refused():
    with pytest.raises(errors.UnknownMessageKindError):
        protocol.decode(cbor2.dumps([1, 9, [], {}]))


def test_unknown_body_keys_are_ignored():
    envelope = cbor2.loads(protocol.encode(mf.event()))
    envelope[3][99] = "from a newer minor version"
    assert protocol.decode(cbor2.dumps(envelope)) == mf.event()


def test_trailing_bytes_are_refused():
    with pytest.raises(errors.MalformedMessageError, match="bytes after"):
        protocol.decode(protocol.encode(mf.status()) + b"\x00")


def test_out_of_range_latitude_is_refused_on_both_sides():
    bad = dataclasses.replace(mf.fixes(2), lat_deg=(47.0, 91.0))
    with pytest.raises(errors.InvalidFieldError, match="lat_deg"):
        protocol.encode(dataclasses.replace(mf.batch(2), fixes=bad))
    envelope = cbor2.loads(protocol.encode(mf.event()))
    envelope[3][6][1] = 900_000_001
    with pytest.raises(errors.InvalidFieldError, match="lat"):
        protocol.decode(cbor2.dumps(envelope))


def test_unknown_signal_is_refused_when_encoding():
    samples = protocol.SampleColumns((mf.T0,), (999,), (1.0,))
    with pytest.raises(errors.UnknownSignalError):
        protocol.encode(dataclasses.replace(mf.batch(), samples=samples))


def test_bool_signal_value_must_be_0_or_1():
    samples = protocol.SampleColumns((mf.T0,), (60,), (0.5,))
    with pytest.raises(errors.InvalidFieldError, match="bool"):
        protocol.encode(dataclasses.replace(mf.batch(), samples=samples))


def test_command_without_encoding_is_not_a_message():
    with pytest.raises(errors.EncodeError):
        protocol.encode(Command)  # type: ignore[arg-type]


def test_numpy_numbers_from_detectors_encode_like_python_numbers():
    import numpy as np

    features = {"displacement_m": np.float64(412.5), "tilt_deg": np.float32(4.25)}
    event = dataclasses.replace(mf.event(), event_id=np.int64(9001),  # type: ignore[arg-type]
                                features=features)  # type: ignore[arg-type]
    plain = dataclasses.replace(mf.event(), features={"displacement_m": 412.5, "tilt_deg": 4.25})
    assert protocol.encode(event) == protocol.encode(plain)


def test_bools_are_not_numbers():
    with pytest.raises(errors.InvalidFieldError):
        protocol.encode(dataclasses.replace(mf.event(), event_id=True))
    with pytest.raises(errors.InvalidFieldError):
        protocol.encode(dataclasses.replace(mf.event(), features={"x": False}))


@pytest.mark.parametrize("column, values", [
    ("lat_deg", ("47.1", "47.2")), ("lat_deg", (True, False)), ("sats", (1.5, 2.0)), ("time_ns", (-1, 0)),
    ("fix_type", (2, 7)), ("hdop", (float("nan"), 1.0)), ("time_ns", (2**70, 0)),
])
def test_bad_fix_columns_are_refused_on_encode(column, values):
    fixes = dataclasses.replace(mf.fixes(2), **{column: values})
    with pytest.raises(errors.InvalidFieldError):
        protocol.encode(dataclasses.replace(mf.batch(2), fixes=fixes))


def test_ragged_columns_are_refused_on_encode():
    fixes = dataclasses.replace(mf.fixes(3), hdop=(0.9, 0.9))
    with pytest.raises(errors.InvalidFieldError, match="same length"):
        protocol.encode(dataclasses.replace(mf.batch(3), fixes=fixes))


def test_a_batch_too_big_for_one_message_is_refused_on_encode():
    import random

    rnd = random.Random(1)
    n = 3600  # random walk over the whole globe: every difference spills to the widest plane
    fixes = protocol.FixColumns(
        tuple(mf.T0 + i * 10**9 for i in range(n)), tuple(rnd.randint(-900, 900) / 10 for _ in range(n)),
        tuple(rnd.randint(-1800, 1800) / 10 for _ in range(n)), (0.0,) * n, (0.0,) * n, (0.0,) * n,
        (1.0,) * n, (9,) * n, (2,) * n)
    samples = protocol.SampleColumns(tuple(mf.T0 + i * 10**6 for i in range(16384)), (2,) * 16384,
                                     tuple(float(rnd.randint(0, 2**39)) for _ in range(16384)))
    with pytest.raises(errors.PayloadTooLargeError, match="split"):
        protocol.encode(protocol.TelemetryBatch(mf.HEADER, fixes, samples))
