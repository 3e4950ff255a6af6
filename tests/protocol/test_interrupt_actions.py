"""Protocol 1.2: the starter-interrupt and payment-reminder actions and the ack's interrupt key."""

from __future__ import annotations

import cbor2
import pytest

import protocol
from protocol import bodies, golden, jsonform
from protocol.errors import InvalidFieldError, MalformedMessageError, ProtocolError
from protocol.messages import (
    AckStatus,
    ArmStarterInterrupt,
    Command,
    CommandAck,
    InterruptState,
    PaymentReminder,
    ReleaseStarterInterrupt,
    ReminderPattern,
    SignedCommand,
)


def _command(action: object) -> Command:
    return Command("veh-0001", b"\x01" * 16, golden.T0, golden.T0 + 10**12, action)  # type: ignore[arg-type]


@pytest.mark.parametrize("action", [ArmStarterInterrupt(), ReleaseStarterInterrupt(),
                                    PaymentReminder("2026-02-28", ReminderPattern.FINAL)])
def test_actions_round_trip_in_cbor_and_json(action):
    command = _command(action)
    decoded = protocol.decode(protocol.encode(command))
    assert isinstance(decoded, SignedCommand) and decoded.command == command
    again = jsonform.loads(jsonform.dumps(decoded))
    assert isinstance(again, SignedCommand) and again.command == command


def test_action_codes_are_9_10_11():
    assert [bodies.encode_command(_command(a))[5] for a in
            (ArmStarterInterrupt(), ReleaseStarterInterrupt(), PaymentReminder("2026-01-05"))] == [9, 10, 11]


def _body(code: int, params: object = None) -> bytes:
    body = {1: "veh-0001", 2: b"\x01" * 16, 3: golden.T0, 4: golden.T0 + 10**12, 5: code}
    if params is not None:
        body[6] = params
    return cbor2.dumps([1, 16, cbor2.dumps(body), None])


@pytest.mark.parametrize("code, params, error", [
    (9, 1, InvalidFieldError),  # arm takes no parameters
    (10, [], InvalidFieldError),
    (11, None, MalformedMessageError),  # a reminder needs [due-date, pattern]
    (11, ["2026-01-05"], MalformedMessageError),
    (11, ["2026-02-30", 1], InvalidFieldError),  # no such day
    (11, ["26-01-05", 1], InvalidFieldError),
    (11, ["1999-12-31", 1], InvalidFieldError),
    (11, [20260105, 1], InvalidFieldError),
    (11, ["2026-01-05", 4], InvalidFieldError),  # unknown pattern: enums are closed
    (11, ["2026-01-05", True], InvalidFieldError),
    (12, None, InvalidFieldError),  # unknown action
])
def test_garbage_parameters_are_refused_with_a_typed_error(code, params, error):
    with pytest.raises(error):
        protocol.decode(_body(code, params))


def test_encoding_refuses_a_bad_due_date():
    with pytest.raises(InvalidFieldError, match="due_date"):
        protocol.encode(_command(PaymentReminder("5 Jan 2026")))


def test_ack_interrupt_key_round_trips_and_is_absent_when_none():
    ack = CommandAck(golden.HEADER, golden.NONCE, AckStatus.DONE, "engaged", interrupt=InterruptState.ENGAGED)
    assert protocol.decode(protocol.encode(ack)) == ack
    plain = CommandAck(golden.HEADER, golden.NONCE, AckStatus.DONE)
    assert 5 not in bodies.encode_ack(plain)
    decoded = protocol.decode(protocol.encode(plain))
    assert isinstance(decoded, CommandAck) and decoded.interrupt is None


def test_ack_with_an_unknown_interrupt_state_is_refused():
    body = bodies.encode_ack(CommandAck(golden.HEADER, golden.NONCE, AckStatus.DONE))
    body[5] = 7
    payload = protocol.encode(CommandAck(golden.HEADER, golden.NONCE, AckStatus.DONE))
    envelope = cbor2.loads(payload)
    envelope[3] = body
    with pytest.raises(ProtocolError):
        protocol.decode(cbor2.dumps(envelope))
