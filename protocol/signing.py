"""Downlink command authenticity: Ed25519 signatures, expiry, nonce replay and addressee checks.

The cloud signs the exact CBOR bytes of a command body (prefixed with a domain-separation
context, so a signature over anything else can never pass as a command signature). The edge runs
`verify_command` (or a `CommandVerifier` bound to its clock) before acting; each refusal is its
own `CommandRefusedError` subclass, checked in this order: unsigned, bad signature, wrong
addressee, expired / not yet valid / too long-lived, replayed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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
from protocol.messages import Command, SignedCommand

SIGNATURE_CONTEXT = b"lienwatch command v1\x00"
DEFAULT_MAX_LIFETIME_NS = 7 * 86400 * 10**9  # a command is valid for at most a week
DEFAULT_CLOCK_SKEW_NS = 300 * 10**9  # issued up to 5 minutes "in the future" is accepted


def generate_key() -> Ed25519PrivateKey:
    """A new command-signing key (keep it in the cloud's secret store, never on a device)."""
    return Ed25519PrivateKey.generate()


def private_key_from_bytes(raw: bytes) -> Ed25519PrivateKey:
    """A signing key from its 32 raw bytes."""
    try:
        return Ed25519PrivateKey.from_private_bytes(raw)
    except ValueError as error:
        raise ProtocolError(f"not an Ed25519 private key: {error}") from None


def public_key_from_bytes(raw: bytes) -> Ed25519PublicKey:
    """A verification key from its 32 raw bytes (as provisioned on the device)."""
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as error:
        raise ProtocolError(f"not an Ed25519 public key: {error}") from None


def sign_command(command: Command, private_key: Ed25519PrivateKey) -> SignedCommand:
    """The command, its CBOR body and the Ed25519 signature over context + body."""
    body = encode_command_body(command)
    return SignedCommand(command, body, private_key.sign(SIGNATURE_CONTEXT + body))


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
    public_keys: Sequence[Ed25519PublicKey],
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
    message = SIGNATURE_CONTEXT + signed.body
    for key in public_keys:
        try:
            key.verify(signed.signature, message)
            break
        except InvalidSignature:
            continue
    else:
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


class CommandVerifier:
    """`verify_command` bound to one device, its trusted keys, its clock and its replay cache."""

    def __init__(
        self,
        device_id: str,
        public_keys: Sequence[Ed25519PublicKey],
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
