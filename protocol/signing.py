"""Downlink command authenticity: Ed25519 signatures, expiry, nonce replay and addressee checks.

The cloud signs the exact CBOR bytes of a command body (prefixed with a domain-separation
context, so a signature over anything else can never pass as a command signature). The edge runs
`verify_command` (or a `CommandVerifier` bound to its clock) before acting; each refusal is its
own `CommandRefusedError` subclass, checked in this order: unsigned, bad signature, wrong
addressee, expired / not yet valid / too long-lived, replayed.

Keys are PyNaCl's (libsodium): `PrivateKey` is a `nacl.signing.SigningKey`, `PublicKey` is
`nacl.signing.VerifyKey`. Key files are the usual RFC 8410 PEM: `public_key(s)_from_pem` /
`public_key_to_pem` (SubjectPublicKeyInfo, `openssl pkey -pubout`) and `private_key_from_pem` /
`private_key_to_pem` (unencrypted PKCS#8, `openssl genpkey -algorithm ed25519`).
"""

from __future__ import annotations

import base64
import binascii
import heapq
import re
from collections.abc import Iterable, Sequence
from typing import TypeAlias

import nacl.exceptions
import nacl.signing
import nacl.utils

from lienwatch.clock import Clock
from protocol import bodies, cbor, fields
from protocol.codec import encode_command_body
from protocol.errors import (
    BadSignatureError,
    ExpiredCommandError,
    ProtocolError,
    ReplayedCommandError,
    UnsignedCommandError,
    WrongAddresseeError,
)
from protocol.limits import SIGNATURE_BYTES
from protocol.messages import Command, SignedCommand

SIGNATURE_CONTEXT = b"lienwatch command v1\x00"
DEFAULT_MAX_LIFETIME_NS = 7 * 86400 * 10**9  # a command is valid for at most a week
DEFAULT_CLOCK_SKEW_NS = 300 * 10**9  # issued up to 5 minutes "in the future" is accepted
KEY_BYTES = 32  # an Ed25519 public key, and a private key's seed

PublicKey: TypeAlias = nacl.signing.VerifyKey


class KeyFormatError(ProtocolError):
    """Bytes or PEM text that are not an Ed25519 key in the expected encoding."""


class PrivateKey(nacl.signing.SigningKey):
    """An Ed25519 command-signing key: a PyNaCl `SigningKey` that also answers `public_key()`."""

    def public_key(self) -> PublicKey:
        """The verification key that devices are provisioned with."""
        return self.verify_key


def generate_key() -> PrivateKey:
    """A new command-signing key (keep it in the cloud's secret store, never on a device)."""
    return PrivateKey(nacl.utils.random(KEY_BYTES))


def private_key_from_bytes(raw: bytes) -> PrivateKey:
    """A signing key from its 32 raw bytes (the RFC 8032 seed)."""
    try:
        return PrivateKey(raw)
    except (TypeError, ValueError) as error:
        raise KeyFormatError(f"not an Ed25519 private key: {error}") from None


def public_key_from_bytes(raw: bytes) -> PublicKey:
    """A verification key from its 32 raw bytes (as provisioned on the device)."""
    try:
        return PublicKey(raw)
    except (TypeError, ValueError) as error:
        raise KeyFormatError(f"not an Ed25519 public key: {error}") from None


# --- PEM (RFC 7468) of RFC 8410 keys ----------------------------------------------------------
# Written by hand rather than parsed with `cryptography`, whose Rust extension alone adds ~8 MB to
# the agent's resident memory (PyNaCl: ~2.4 MB, measured), and the agent only verifies.
# DER is unique, and an Ed25519 SubjectPublicKeyInfo has no algorithm parameters and a fixed-size
# key, so every valid one is the 12-byte prefix below followed by the 32-byte key: a strict prefix
# + length match accepts exactly the valid encodings. An unencrypted PKCS#8 v1 PrivateKeyInfo
# without attributes (what OpenSSL and cryptography write) is likewise a fixed 16-byte prefix + the
# 32-byte seed. RFC 8410 also allows a v2 OneAsymmetricKey (public key and/or attributes attached);
# that, like anything else, is refused with a KeyFormatError.
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # SEQ{SEQ{OID 1.3.101.112}, BIT STRING}
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")  # SEQ{0, SEQ{OID}, OCTETS{OCTETS}}
_OTHER_ALGORITHMS = {  # DER of algorithm OIDs, only to say what a wrong key is
    bytes.fromhex("06092a864886f70d010101"): "RSA",
    bytes.fromhex("06072a8648ce3d0201"): "EC",
    bytes.fromhex("06032b6571"): "Ed448",
    bytes.fromhex("06032b656e"): "X25519",
    bytes.fromhex("06032b656f"): "X448",
}
_BOUNDARY = re.compile(r"-----(BEGIN|END) ([A-Z0-9][A-Z0-9 ]*)-----")


def public_key_to_pem(key: PublicKey) -> bytes:
    """The key as SubjectPublicKeyInfo PEM, byte-identical to `openssl pkey -pubout`."""
    return _pem("PUBLIC KEY", _SPKI_PREFIX + bytes(key))


def private_key_to_pem(key: nacl.signing.SigningKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM, byte-identical to `openssl genpkey -algorithm ed25519`."""
    return _pem("PRIVATE KEY", _PKCS8_PREFIX + bytes(key))


def public_key_from_pem(data: bytes | str) -> PublicKey:
    """The key of a PEM that is exactly one PUBLIC KEY block (SubjectPublicKeyInfo, RFC 8410)."""
    return _public_key(*_single_block(data))


def public_keys_from_pem(data: bytes | str) -> list[PublicKey]:
    """Every key of a PEM bundle of one or more PUBLIC KEY blocks (several allow key rotation).

    Text between blocks is ignored, as RFC 7468 allows; every block must be an Ed25519 public key.
    """
    blocks, _ = _pem_blocks(data)
    if not blocks:
        raise KeyFormatError("no PEM block found (expected -----BEGIN PUBLIC KEY-----)")
    return [_public_key(*block) for block in blocks]


def private_key_from_pem(data: bytes | str) -> PrivateKey:
    """The key of a PEM that is exactly one unencrypted PRIVATE KEY block (PKCS#8, RFC 8410)."""
    label, der, line = _single_block(data)
    if label == "ENCRYPTED PRIVATE KEY":
        raise KeyFormatError(f"line {line}: an encrypted private key; decrypt it first (openssl pkey)")
    if label != "PRIVATE KEY":
        raise KeyFormatError(f"line {line}: a {label} block, expected PRIVATE KEY (PKCS#8)")
    if len(der) == len(_PKCS8_PREFIX) + KEY_BYTES and der.startswith(_PKCS8_PREFIX):
        return PrivateKey(der[len(_PKCS8_PREFIX):])
    raise KeyFormatError(f"line {line}: {_not_ed25519(der, 'PKCS#8 private key', len(_PKCS8_PREFIX))}")


def _public_key(label: str, der: bytes, line: int) -> PublicKey:
    if label != "PUBLIC KEY":
        raise KeyFormatError(f"line {line}: a {label} block, expected PUBLIC KEY (SubjectPublicKeyInfo)")
    if len(der) == len(_SPKI_PREFIX) + KEY_BYTES and der.startswith(_SPKI_PREFIX):
        return PublicKey(der[len(_SPKI_PREFIX):])
    raise KeyFormatError(f"line {line}: {_not_ed25519(der, 'public key', len(_SPKI_PREFIX))}")


def _not_ed25519(der: bytes, what: str, prefix_len: int) -> str:
    for oid, name in _OTHER_ALGORITHMS.items():
        if oid in der[:32]:
            return f"an {name} {what}, not Ed25519"
    return (f"not an RFC 8410 Ed25519 {what} ({len(der)} bytes of DER; expected {prefix_len + KEY_BYTES} "
            f"starting {der[:prefix_len].hex() or 'nothing'})")


def _pem(label: str, der: bytes) -> bytes:
    text = base64.b64encode(der).decode("ascii")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode("ascii")


def _single_block(data: bytes | str) -> tuple[str, bytes, int]:
    blocks, text_outside = _pem_blocks(data)
    if len(blocks) != 1:
        raise KeyFormatError(f"expected exactly one PEM block, found {len(blocks)}")
    if text_outside:
        raise KeyFormatError("text outside the PEM block (expected the block alone)")
    return blocks[0]


def _pem_blocks(data: bytes | str) -> tuple[list[tuple[str, bytes, int]], bool]:
    """(label, DER, line of BEGIN) of each PEM block, and whether there is text outside them."""
    if isinstance(data, bytes):
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise KeyFormatError("PEM is not ASCII text") from None
    else:
        text = data
    blocks: list[tuple[str, bytes, int]] = []
    text_outside = False
    label: str | None = None
    start = 0
    body: list[str] = []
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        boundary = _BOUNDARY.fullmatch(line)
        if label is None:
            if boundary is not None and boundary[1] == "BEGIN":
                label, start, body = boundary[2], number, []
            elif "-----BEGIN" in line or "-----END" in line:
                raise KeyFormatError(f"line {number}: not a PEM BEGIN line: {line[:80]!r}")
            elif line:
                text_outside = True
            continue
        if boundary is not None and boundary[1] == "END" and boundary[2] == label:
            try:
                der = base64.b64decode("".join(body), validate=True)
            except (binascii.Error, ValueError) as error:
                raise KeyFormatError(f"line {start}: {label} block is not valid base64: {error}") from None
            blocks.append((label, der, start))
            label = None
        elif "-----" in line:
            raise KeyFormatError(f"line {number}: {line[:80]!r} inside the {label} block of line {start}")
        elif ":" in line:
            raise KeyFormatError(f"line {number}: PEM headers (a legacy encrypted key?) are not supported")
        else:
            body.append(line)
    if label is not None:
        raise KeyFormatError(f"line {start}: the {label} block has no -----END {label}----- line")
    return blocks, text_outside


def sign_command(command: Command, private_key: nacl.signing.SigningKey) -> SignedCommand:
    """The command, its CBOR body and the Ed25519 signature over context + body."""
    body = encode_command_body(command)
    return SignedCommand(command, body, private_key.sign(SIGNATURE_CONTEXT + body).signature)


class ReplayCache:
    """The nonces of accepted commands that have not expired yet, bounded to `capacity` entries.

    When full, expired nonces are dropped first; if none has expired, the nonce that expires
    soonest is evicted and `floor_ns` rises to its expiry: from then on any command expiring at
    or before `floor_ns` is refused as possibly replayed (fail closed, never forget silently).
    `snapshot()`/`restore()` let the agent keep the cache across reboots.
    """

    def __init__(self, capacity: int = 4096, floor_ns: int = 0) -> None:
        if capacity < 1:
            raise ValueError("a replay cache needs a capacity of at least 1")
        self.capacity = capacity
        self.floor_ns = floor_ns
        self._expiry: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._expiry

    def check_and_add(self, nonce: bytes, expires_ns: int, now_ns: int) -> None:
        """Record `nonce`; ReplayedCommandError if it was seen or is too old to be checked."""
        if nonce in self._expiry:
            raise ReplayedCommandError(f"command nonce {nonce.hex()} was already used")
        if expires_ns <= self.floor_ns:
            raise ReplayedCommandError(
                "command is older than the replay cache can vouch for (expires at or before "
                f"{self.floor_ns} ns); resend it with a later expiry")
        while self._heap and (self._heap[0][0] <= now_ns or len(self._expiry) >= self.capacity):
            expiry, old = heapq.heappop(self._heap)
            del self._expiry[old]
            if expiry > now_ns:
                self.floor_ns = max(self.floor_ns, expiry)
        self._expiry[nonce] = expires_ns
        heapq.heappush(self._heap, (expires_ns, nonce))

    def snapshot(self) -> tuple[int, list[tuple[bytes, int]]]:
        """(floor_ns, [(nonce, expires_ns), ...]) to persist."""
        return self.floor_ns, sorted(self._expiry.items(), key=lambda item: item[1])

    @classmethod
    def restore(
        cls, floor_ns: int, entries: Iterable[tuple[bytes, int]], capacity: int = 4096
    ) -> ReplayCache:
        cache = cls(capacity, floor_ns)
        for nonce, expires_ns in entries:
            cache.check_and_add(nonce, expires_ns, 0)
        return cache


def verify_command(
    signed: SignedCommand,
    public_keys: Sequence[PublicKey],
    *,
    device_id: str,
    now_ns: int,
    replay_cache: ReplayCache,
    max_lifetime_ns: int = DEFAULT_MAX_LIFETIME_NS,
    clock_skew_ns: int = DEFAULT_CLOCK_SKEW_NS,
) -> Command:
    """The command, if `device_id` may execute it at `now_ns`; a CommandRefusedError otherwise.

    The returned command is decoded from the verified bytes (never taken from `signed.command`).
    Its nonce is recorded in `replay_cache` only when every other check passed.
    """
    if not signed.signature:
        raise UnsignedCommandError("command is not signed; devices only execute signed commands")
    message, signature = SIGNATURE_CONTEXT + signed.body, bytes(signed.signature)
    if not any(_verifies(key, message, signature) for key in public_keys):
        raise BadSignatureError("command signature does not verify with any trusted command key")
    command = bodies.decode_command(fields.body_map(cbor.loads(signed.body, "command body"), "command body"))
    if command.target_device_id != device_id:
        raise WrongAddresseeError(
            f"command is addressed to {command.target_device_id!r}, this device is {device_id!r}")
    if now_ns >= command.expires_ns:
        raise ExpiredCommandError(f"command expired {(now_ns - command.expires_ns) / 1e9:.0f} s ago")
    if command.issued_ns > now_ns + clock_skew_ns:
        raise ExpiredCommandError(
            f"command is issued {(command.issued_ns - now_ns) / 1e9:.0f} s in the future "
            "(check the device clock)")
    if command.expires_ns - command.issued_ns > max_lifetime_ns:
        raise ExpiredCommandError(
            f"command validity window exceeds the maximum of {max_lifetime_ns / 1e9:.0f} s")
    replay_cache.check_and_add(command.nonce, command.expires_ns, now_ns)
    return command


def _verifies(key: PublicKey, message: bytes, signature: bytes) -> bool:
    # libsodium also refuses non-canonical signatures and small-order keys; honest ones all verify.
    if len(signature) != SIGNATURE_BYTES:  # PyNaCl raises ValueError; no key verifies it
        return False
    try:
        key.verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


class CommandVerifier:
    """`verify_command` bound to one device, its trusted keys, its clock and its replay cache."""

    def __init__(
        self,
        device_id: str,
        public_keys: Sequence[PublicKey],
        clock: Clock,
        replay_cache: ReplayCache | None = None,
        *,
        max_lifetime_ns: int = DEFAULT_MAX_LIFETIME_NS,
        clock_skew_ns: int = DEFAULT_CLOCK_SKEW_NS,
    ) -> None:
        self.device_id = device_id
        self.public_keys = tuple(public_keys)
        self.clock = clock
        self.replay_cache = replay_cache if replay_cache is not None else ReplayCache()
        self.max_lifetime_ns = max_lifetime_ns
        self.clock_skew_ns = clock_skew_ns

    def verify(self, signed: SignedCommand) -> Command:
        return verify_command(
            signed, self.public_keys, device_id=self.device_id, now_ns=self.clock.wall_ns(),
            replay_cache=self.replay_cache, max_lifetime_ns=self.max_lifetime_ns,
            clock_skew_ns=self.clock_skew_ns,
        )
