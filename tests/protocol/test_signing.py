"""Command signatures: the edge refuses unsigned, forged, expired, replayed and misaddressed commands."""

from __future__ import annotations

import dataclasses

import pytest

import protocol
from lienwatch.clock import ManualClock
from protocol import errors, signing
from protocol.messages import Reboot, SignedCommand
from tests.protocol import messages_fixture as mf

KEY = signing.private_key_from_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()
NOW = mf.T0 + 60 * 10**9


def verify(signed: SignedCommand, *, now_ns: int = NOW, cache: signing.ReplayCache | None = None,
           device_id: str = "veh-0001"):
    return signing.verify_command(signed, [PUBLIC], device_id=device_id, now_ns=now_ns,
                                  replay_cache=cache if cache is not None else signing.ReplayCache())


def wire(signed: SignedCommand) -> SignedCommand:
    decoded = protocol.decode(protocol.encode(signed))
    assert isinstance(decoded, SignedCommand)
    return decoded


def test_signed_command_verifies_after_the_wire():
    assert verify(wire(signing.sign_command(mf.command(), KEY))) == mf.command()


def test_unsigned_command_is_refused():
    with pytest.raises(errors.UnsignedCommandError):
        verify(wire(SignedCommand(mf.command(), protocol.encode_command_body(mf.command()), None)))


def test_signature_from_another_key_is_refused():
    other = signing.sign_command(mf.command(), signing.generate_key())
    with pytest.raises(errors.BadSignatureError):
        verify(wire(other))


def test_tampered_body_is_refused():
    signed = signing.sign_command(mf.command(), KEY)
    evil = protocol.encode_command_body(dataclasses.replace(mf.command(), action=Reboot()))
    with pytest.raises(errors.BadSignatureError):
        verify(dataclasses.replace(signed, body=evil))


def test_command_fields_are_taken_from_the_signed_bytes_only():
    signed = signing.sign_command(mf.command(), KEY)
    lying = dataclasses.replace(signed, command=dataclasses.replace(mf.command(), action=Reboot()))
    assert verify(lying).action == mf.command().action


def test_expired_command_is_refused():
    signed = signing.sign_command(mf.command(), KEY)
    with pytest.raises(errors.ExpiredCommandError, match="expired"):
        verify(signed, now_ns=mf.command().expires_ns)


def test_command_from_the_future_or_too_long_lived_is_refused():
    future = dataclasses.replace(mf.command(), issued_ns=NOW + 3600 * 10**9, expires_ns=NOW + 7200 * 10**9)
    with pytest.raises(errors.ExpiredCommandError, match="future"):
        verify(signing.sign_command(future, KEY))
    forever = dataclasses.replace(mf.command(), expires_ns=mf.T0 + 30 * 86400 * 10**9)
    with pytest.raises(errors.ExpiredCommandError, match="window"):
        verify(signing.sign_command(forever, KEY))


def test_replayed_command_is_refused():
    cache = signing.ReplayCache()
    signed = signing.sign_command(mf.command(), KEY)
    verify(signed, cache=cache)
    with pytest.raises(errors.ReplayedCommandError):
        verify(signed, cache=cache)


def test_command_for_another_device_is_refused():
    with pytest.raises(errors.WrongAddresseeError):
        verify(signing.sign_command(mf.command(), KEY), device_id="veh-0002")


def test_refusals_are_distinct_classes():
    classes = {errors.UnsignedCommandError, errors.BadSignatureError, errors.ExpiredCommandError,
               errors.ReplayedCommandError, errors.WrongAddresseeError}
    assert len(classes) == 5
    assert all(issubclass(c, errors.CommandRefusedError) for c in classes)


def test_full_replay_cache_fails_closed_for_old_commands():
    cache = signing.ReplayCache(capacity=2)
    for i, expiry in enumerate((100, 200, 300)):
        cache.check_and_add(bytes([i]) * 16, expiry, now_ns=10)
    assert len(cache) == 2 and cache.floor_ns == 100
    with pytest.raises(errors.ReplayedCommandError, match="older"):
        cache.check_and_add(b"\xff" * 16, 100, now_ns=10)
    with pytest.raises(errors.ReplayedCommandError):
        cache.check_and_add(bytes([1]) * 16, 200, now_ns=10)


def test_expired_nonces_leave_the_cache_without_raising_the_floor():
    cache = signing.ReplayCache(capacity=2)
    cache.check_and_add(b"a" * 16, 100, now_ns=10)
    cache.check_and_add(b"b" * 16, 200, now_ns=10)
    cache.check_and_add(b"c" * 16, 300, now_ns=150)
    assert cache.floor_ns == 0 and len(cache) == 2 and b"a" * 16 not in cache


def test_replay_cache_survives_a_snapshot():
    cache = signing.ReplayCache(capacity=8)
    cache.check_and_add(b"a" * 16, 500, now_ns=10)
    restored = signing.ReplayCache.restore(*cache.snapshot(), capacity=8)
    with pytest.raises(errors.ReplayedCommandError):
        restored.check_and_add(b"a" * 16, 500, now_ns=20)


def test_verifier_reads_the_injected_clock():
    clock = ManualClock(wall_ns=NOW)
    verifier = signing.CommandVerifier("veh-0001", [PUBLIC], clock)
    verifier.verify(signing.sign_command(mf.command(), KEY))
    clock.advance(3600)
    again = signing.sign_command(dataclasses.replace(mf.command(), nonce=b"n" * 16), KEY)
    with pytest.raises(errors.ExpiredCommandError):
        verifier.verify(again)


def test_bad_key_bytes_are_a_protocol_error():
    with pytest.raises(errors.ProtocolError):
        signing.public_key_from_bytes(b"short")


def test_signature_of_the_wrong_length_is_refused_by_the_decoder():
    import cbor2

    envelope = cbor2.loads(protocol.encode(signing.sign_command(mf.command(), KEY)))
    envelope[3] = envelope[3][:10]
    with pytest.raises(errors.InvalidFieldError, match="signature"):
        protocol.decode(cbor2.dumps(envelope))


def test_no_trusted_keys_means_no_command_verifies():
    with pytest.raises(errors.BadSignatureError):
        signing.verify_command(signing.sign_command(mf.command(), KEY), [], device_id="veh-0001",
                               now_ns=NOW, replay_cache=signing.ReplayCache())


def test_key_rotation_accepts_any_trusted_key():
    old, new = signing.generate_key(), KEY
    signed = signing.sign_command(mf.command(), new)
    assert signing.verify_command(signed, [old.public_key(), PUBLIC], device_id="veh-0001", now_ns=NOW,
                                  replay_cache=signing.ReplayCache()) == mf.command()
