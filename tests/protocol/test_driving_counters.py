"""Status key 13 (1.1): the driving detector's day counters round-trip, and hostile values are refused."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import cbor2
import pytest

import protocol
from protocol import errors, golden, jsonform
from protocol.messages import DrivingDay, Status

VECTOR = (golden.VECTOR_DIR / "status_counters.cbor").read_bytes()


def with_driving(value: object) -> bytes:
    """The status vector with key 13 of its body replaced by `value` (raw CBOR, not re-validated)."""
    message = cbor2.loads(VECTOR)
    message[3][13] = value
    return cbor2.dumps(message)


def entry(**changes: Any) -> dict[int, Any]:
    base: dict[int, Any] = {1: "2026-01-01", 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7}
    base.update({int(k[1:]): v for k, v in changes.items()})
    return base


def test_the_vector_decodes_both_days_and_round_trips_through_cbor_and_json() -> None:
    status = protocol.decode(VECTOR)
    assert isinstance(status, Status)
    assert status.driving == (DrivingDay("2025-12-31", 2, 5, 1, 1, 74, 0, 0),
                              DrivingDay("2026-01-01", 0, 1, 0, 0, 0, 1, 412))
    assert protocol.encode(status) == VECTOR
    assert jsonform.loads(jsonform.dumps(status)) == status


def test_a_status_without_key_13_has_no_counters_and_missing_counts_are_zero() -> None:
    plain = protocol.decode((golden.VECTOR_DIR / "status.cbor").read_bytes())
    assert isinstance(plain, Status) and plain.driving == ()
    status = protocol.decode(with_driving([{1: "2026-01-01", 3: 4, 99: "a later key"}]))
    assert isinstance(status, Status) and status.driving == (DrivingDay("2026-01-01", harsh_brake=4),)


@pytest.mark.parametrize("value", [
    [], [entry(), entry(k1="2025-12-31"), entry(k1="2025-12-30")],  # 0 or 3 days
    [entry(), entry()],  # the same day twice
    {1: "2026-01-01"}, "2026-01-01", 7, cbor2.CBORTag(1, 0), [["2026-01-01", 1]], [entry(k1=None)],
    [entry(k2=-1)], [entry(k3=100_001)], [entry(k6=90_001)], [entry(k8=2**64)], [entry(k7=1.0)],
    [entry(k4=True)], [entry(k5="3")], [entry(k2=None)],
    [entry(k1="2026-1-01")], [entry(k1="20260101")], [entry(k1="2026-02-30")], [entry(k1="2026-01-01T0")],
    [entry(k1=20260101)], [entry(k1=b"2026-01-01")], [entry(k1="٢٠٢٦-٠١-٠١")],
    [entry(k1="2025-12-29")], [entry(k1="2026-01-04")], [entry(k1="1970-01-01")],  # far from sent-ns
])
def test_hostile_driving_counters_are_refused_with_a_typed_error(value: object) -> None:
    with pytest.raises(errors.ProtocolError) as refusal:
        protocol.decode(with_driving(value))
    assert not isinstance(refusal.value, errors.InternalDecodeError)


@pytest.mark.parametrize("day", [
    DrivingDay("2026-01-01", harsh_accel=-1), DrivingDay("2026-01-01", idle_long_s=10**9),
    DrivingDay("2026-01-01", overspeed=1.5), DrivingDay("2026-02-30"),  # type: ignore[arg-type]
    DrivingDay("2025-06-01"), "2026-01-01",
])
def test_the_encoder_refuses_what_the_decoder_would(day: object) -> None:
    with pytest.raises(errors.InvalidFieldError):
        protocol.encode(replace(golden.status(), driving=(day,)))  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidFieldError):
        protocol.encode(replace(golden.status(), driving=(DrivingDay("2026-01-01"),) * 2))
