"""Command signatures: the edge refuses unsigned, forged, expired, replayed and misaddressed commands."""

from __future__ import annotations

import base64
import dataclasses
import re
import subprocess
from pathlib import Path

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
           device_id: str = "veh-0001", public: signing.PublicKey = PUBLIC):
    return signing.verify_command(signed, [public], device_id=device_id, now_ns=now_ns,
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


# --- keys as PEM (RFC 8410), read and written without `cryptography` ----------------------------


def openssl(*args: str, stdin: bytes = b"") -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def openssl_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """(private key file, its PKCS#8 PEM, its SubjectPublicKeyInfo PEM), all written by openssl."""
    path = tmp_path_factory.mktemp("openssl") / "command.key"
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(path))
    return path, path.read_bytes(), openssl("pkey", "-in", str(path), "-pubout")


def test_pem_helpers_read_and_write_exactly_what_openssl_does(openssl_key):
    _, private_pem, public_pem = openssl_key
    key = signing.private_key_from_pem(private_pem)
    public = signing.public_key_from_pem(public_pem)
    assert key.public_key() == public
    assert signing.private_key_to_pem(key) == private_pem
    assert signing.public_key_to_pem(public) == public_pem
    # and openssl derives the same public key from the private PEM we write
    assert openssl("pkey", "-pubout", stdin=signing.private_key_to_pem(key)) == public_pem


def test_command_signatures_are_plain_ed25519_that_openssl_verifies(openssl_key, tmp_path):
    key_file, private_pem, public_pem = openssl_key
    signed = signing.sign_command(mf.command(), signing.private_key_from_pem(private_pem))
    assert signed.signature is not None
    message, signature = tmp_path / "message", tmp_path / "signature"
    message.write_bytes(signing.SIGNATURE_CONTEXT + signed.body)
    signature.write_bytes(signed.signature)
    (tmp_path / "public.pem").write_bytes(public_pem)
    verified = openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "public.pem"), "-rawin",
                       "-in", str(message), "-sigfile", str(signature))
    assert b"Signature Verified Successfully" in verified
    # ...and the other way round: openssl signs, the device-side verifier accepts it.
    by_openssl = openssl("pkeyutl", "-sign", "-inkey", str(key_file), "-rawin", "-in", str(message))
    assert by_openssl == signed.signature  # Ed25519 is deterministic
    assert verify(dataclasses.replace(signed, signature=by_openssl),
                  public=signing.public_key_from_pem(public_pem)) == mf.command()


def test_public_key_bundle_keeps_every_key_and_ignores_text_between_blocks(openssl_key):
    _, _, public_pem = openssl_key
    other = signing.public_key_to_pem(PUBLIC)
    bundle = b"# current key\n" + public_pem + b"\n# previous key, until rotation ends\r\n" + other
    assert signing.public_keys_from_pem(bundle) == [signing.public_key_from_pem(public_pem), PUBLIC]


def _pem(label: str, der: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n{base64.b64encode(der).decode()}\n-----END {label}-----\n".encode()


SPKI = bytes.fromhex("302a300506032b6570032100")
PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
GOOD_PUBLIC = signing.public_key_to_pem(PUBLIC)
GOOD_PRIVATE = signing.private_key_to_pem(KEY)


@pytest.mark.parametrize(("pem", "reason"), [
    (b"", "exactly one PEM block, found 0"),
    (b"just some text\n", "exactly one PEM block, found 0"),
    (GOOD_PUBLIC + GOOD_PUBLIC, "exactly one PEM block, found 2"),
    (GOOD_PUBLIC + b"trailing garbage\n", "text outside"),
    (GOOD_PUBLIC.replace(b"-----END PUBLIC KEY-----\n", b""), "no -----END PUBLIC KEY----- line"),
    (GOOD_PUBLIC.replace(b"END PUBLIC", b"END PRIVATE"), "inside the PUBLIC KEY block"),
    (GOOD_PUBLIC.replace(b"-----BEGIN PUBLIC KEY-----", b"----BEGIN PUBLIC KEY-----"), "not a PEM BEGIN"),
    (GOOD_PUBLIC.replace(b"\n-----END", b"!\n-----END"), "not valid base64"),
    (GOOD_PUBLIC.replace(b"=\n", b"\n"), "not valid base64"),  # padding cut off
    (GOOD_PUBLIC.replace(b"\n-----END", b"\nnot base64 at all\n-----END"), "not valid base64"),
    (GOOD_PUBLIC.replace(b"PUBLIC KEY", b"RSA PUBLIC KEY"), "RSA PUBLIC KEY block, expected PUBLIC KEY"),
    (GOOD_PRIVATE, "PRIVATE KEY block, expected PUBLIC KEY"),
    (_pem("PUBLIC KEY", SPKI + bytes(31)), "43 bytes of DER; expected 44"),
    (_pem("PUBLIC KEY", SPKI + bytes(33)), "45 bytes of DER; expected 44"),  # trailing garbage in the DER
    (_pem("PUBLIC KEY", b""), "0 bytes of DER"),
    (_pem("PUBLIC KEY", SPKI.replace(b"\x70", b"\x71") + bytes(32)), "an Ed448 public key"),
    ("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\u00e9\n-----END PUBLIC KEY-----\n".encode(), "not ASCII"),
])
def test_garbage_public_pem_is_a_key_format_error(pem: bytes, reason: str):
    with pytest.raises(signing.KeyFormatError, match=re.escape(reason)):
        signing.public_key_from_pem(pem)


@pytest.mark.parametrize(("pem", "reason"), [
    (GOOD_PUBLIC, "PUBLIC KEY block, expected PRIVATE KEY"),
    (GOOD_PRIVATE.replace(b"PRIVATE KEY", b"OPENSSH PRIVATE KEY"), "OPENSSH PRIVATE KEY block"),
    (_pem("PRIVATE KEY", PKCS8 + bytes(31)), "47 bytes of DER; expected 48"),
    (_pem("PRIVATE KEY", PKCS8 + bytes(33)), "49 bytes of DER; expected 48"),
    # RFC 8410's v2 OneAsymmetricKey (public key attached): valid, but not what OpenSSL writes
    (_pem("PRIVATE KEY", bytes.fromhex("3051020101300506032b657004220420") + bytes(KEY)
          + bytes.fromhex("812100") + bytes(PUBLIC)), "not an RFC 8410 Ed25519 PKCS#8 private key"),
    (GOOD_PRIVATE.replace(b"-----\n", b"-----\nProc-Type: 4,ENCRYPTED\n", 1), "PEM headers"),
])
def test_garbage_private_pem_is_a_key_format_error(pem: bytes, reason: str):
    with pytest.raises(signing.KeyFormatError, match=re.escape(reason)):
        signing.private_key_from_pem(pem)


def test_other_algorithms_from_openssl_are_named_in_the_refusal(tmp_path):
    for algorithm, name in [(["RSA", "-pkeyopt", "rsa_keygen_bits:1024"], "RSA"),
                            (["EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "EC"),
                            (["ed448"], "Ed448"), (["x25519"], "X25519")]:
        private = openssl("genpkey", "-algorithm", *algorithm)
        with pytest.raises(signing.KeyFormatError, match=f"an {name} public key, not Ed25519"):
            signing.public_key_from_pem(openssl("pkey", "-pubout", stdin=private))
        with pytest.raises(signing.KeyFormatError, match=f"an {name} PKCS#8 private key, not Ed25519"):
            signing.private_key_from_pem(private)


def test_encrypted_private_key_from_openssl_is_refused_with_advice():
    encrypted = openssl("genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:secret")
    assert b"ENCRYPTED PRIVATE KEY" in encrypted
    with pytest.raises(signing.KeyFormatError, match="encrypted private key; decrypt it first"):
        signing.private_key_from_pem(encrypted)


def test_key_format_errors_are_protocol_errors():
    assert issubclass(signing.KeyFormatError, errors.ProtocolError)
    with pytest.raises(signing.KeyFormatError):
        signing.private_key_from_bytes(bytes(31))


def test_wrong_length_signature_built_in_process_is_a_bad_signature():
    signed = signing.sign_command(mf.command(), KEY)
    assert signed.signature is not None
    for signature in (signed.signature[:63], signed.signature + b"\x00"):
        with pytest.raises(errors.BadSignatureError):
            verify(dataclasses.replace(signed, signature=signature))
