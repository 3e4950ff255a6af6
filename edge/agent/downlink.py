"""Downlink commands: decode, verify (signature, addressee, expiry, nonce), execute, acknowledge.

Every command that can be attributed (it decodes and carries a nonce) is answered with a
`CommandAck`: DONE, FAILED (accepted but execution failed) or REJECTED with the refusal's error
class in `detail`, so the cloud sees *why* (BadSignatureError, ExpiredCommandError,
ReplayedCommandError, WrongAddresseeError, UnsignedCommandError). A payload that does not even
decode is counted and logged by its error class; it has no nonce to answer to.

The replay cache (nonces of unexpired executed commands) is persisted in the state directory after
each accepted command, so a reboot does not reopen the replay window.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lienwatch.clock import Clock
from lienwatch.errors import ConfigError, LienwatchError
from protocol import decode
from protocol.errors import CommandRefusedError, ProtocolError
from protocol.limits import MAX_TEXT
from protocol.messages import (
    AckStatus,
    ArmStarterInterrupt,
    ClearEvent,
    ClearGeofence,
    Command,
    CommandAck,
    GnssFix,
    Header,
    InterruptState,
    PaymentReminder,
    Reboot,
    ReleaseStarterInterrupt,
    RequestPosition,
    SetConfig,
    SetGeofence,
    SignedCommand,
)
from protocol.signing import CommandVerifier, PublicKey, ReplayCache, public_keys_from_pem

if TYPE_CHECKING:
    from edge.actuators.agent import Actuators
    from edge.detect.vehicle import GeofenceStore

log = logging.getLogger("lienwatch.downlink")


def load_command_keys(path: Path) -> list[PublicKey]:
    """Ed25519 public keys from a PEM file (several PUBLIC KEY blocks allowed, for key rotation)."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"downlink.command_keys: cannot read {path}: {error}") from None
    try:
        return public_keys_from_pem(text)
    except ProtocolError as error:
        raise ConfigError(f"downlink.command_keys: {path}: {error}") from None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to answer; `reboot` asks the agent to restart after the ack is delivered."""

    status: AckStatus
    detail: str = ""
    position: GnssFix | None = None
    reboot: bool = False
    interrupt: InterruptState | None = None  # the starter interrupt after an interrupt action


ConfigApplier = Callable[[SetConfig], Outcome]
PositionSource = Callable[[], GnssFix | None]


class CommandHandler:
    """Turns downlink payloads into acks; executes what verifies."""

    def __init__(self, device_id: str, keys: Sequence[PublicKey], clock: Clock,
                 state_dir: Path, *, apply_config: ConfigApplier, position: PositionSource,
                 max_lifetime_s: float = 7 * 86400.0, replay_cache_size: int = 4096,
                 geofences: GeofenceStore | None = None,
                 clear_event: Callable[[int], bool] | None = None,
                 actuators: Actuators | None = None) -> None:
        self.clock = clock
        self.nonce_file = state_dir / "nonces.json"
        self.verifier = CommandVerifier(device_id, keys, clock, self._load_cache(replay_cache_size),
                                        max_lifetime_ns=int(max_lifetime_s * 1e9))
        self.apply_config = apply_config
        self.position = position
        self.geofences = geofences  # circular geofences for the detectors, kept in state_dir
        self.clear_event = clear_event  # an operator clears an open event (the agent sends CLEARED)
        self.actuators = actuators  # the starter interrupt and the buzzer (edge.actuators)
        self.executed = 0
        self.refused: dict[str, int] = {}
        self.reboot_requested = False

    def handle(self, payload: bytes, header: Callable[[], Header]) -> CommandAck | None:
        """The ack to send for one downlink payload (None if it cannot be attributed)."""
        try:
            message = decode(payload)
        except ProtocolError as error:
            self._count(error, None)
            return None
        if not isinstance(message, SignedCommand):
            self._count(ProtocolError(f"a {type(message).__name__} on the command topic"), None)
            return None
        nonce = message.command.nonce
        try:
            command = self.verifier.verify(message)
        except CommandRefusedError as error:
            self._count(error, nonce)
            if self.actuators is not None:  # a refused interrupt command is an event too
                self.actuators.refused(message.command.action, _reason(error))
            return CommandAck(header(), nonce, AckStatus.REJECTED, _reason(error))
        except ProtocolError as error:  # a body that decodes badly after the signature checked out
            self._count(error, nonce)
            return CommandAck(header(), nonce, AckStatus.REJECTED, _reason(error))
        self._save_cache()
        outcome = self._execute(command)
        self.executed += 1
        self.reboot_requested = self.reboot_requested or outcome.reboot
        log.info("command executed", extra={"action": type(command.action).__name__,
                                            "nonce": nonce.hex(), "status": outcome.status.name,
                                            "detail": outcome.detail})
        return CommandAck(header(), nonce, outcome.status, outcome.detail, outcome.position,
                          outcome.interrupt)

    def _execute(self, command: Command) -> Outcome:
        action = command.action
        try:
            if isinstance(action, SetConfig):
                return self.apply_config(action)
            if isinstance(action, RequestPosition):
                fix = self.position()
                if fix is None:
                    return Outcome(AckStatus.FAILED, "no GNSS position known yet")
                return Outcome(AckStatus.DONE, position=fix)
            if isinstance(action, Reboot):
                return Outcome(AckStatus.DONE, "agent restarts after this ack", reboot=True)
            if isinstance(action, SetGeofence) and self.geofences is not None:
                self.geofences.set(action.geofence)
                return Outcome(AckStatus.DONE, f"geofence {action.geofence.geofence_id} set")
            if isinstance(action, ClearGeofence) and self.geofences is not None:
                removed = self.geofences.clear(action.geofence_id)
                return Outcome(AckStatus.DONE, f"{removed} geofence(s) cleared")
            if isinstance(action, ClearEvent) and self.clear_event is not None:
                if self.clear_event(action.event_id):
                    return Outcome(AckStatus.DONE, f"event {action.event_id} cleared")
                return Outcome(AckStatus.FAILED, f"no open event {action.event_id}")
            if isinstance(action, ArmStarterInterrupt | ReleaseStarterInterrupt | PaymentReminder):
                if self.actuators is None:
                    return Outcome(AckStatus.REJECTED, "this agent runs without actuators")
                result = self.actuators.execute(action)
                return Outcome(result.status, result.detail, interrupt=result.interrupt)
        except LienwatchError as error:
            return Outcome(AckStatus.FAILED, _reason(error))
        except Exception as error:  # a failure while executing: answer FAILED, keep running
            log.exception("command failed")
            return Outcome(AckStatus.FAILED, _reason(error))
        return Outcome(AckStatus.FAILED, f"{type(action).__name__} is not supported by this agent version")

    def _count(self, error: Exception, nonce: bytes | None) -> None:
        name = type(error).__name__
        self.refused[name] = self.refused.get(name, 0) + 1
        log.warning("command refused", extra={"reason": name, "detail": str(error),
                                              "nonce": nonce.hex() if nonce else None})

    # -- the replay cache on flash (written only when a command is accepted: rare) --------------

    def _load_cache(self, capacity: int) -> ReplayCache:
        try:
            data = json.loads(self.nonce_file.read_text())
            entries = [(bytes.fromhex(n), int(e)) for n, e in data["nonces"]]
            return ReplayCache.restore(int(data["floor_ns"]), entries, capacity)
        except FileNotFoundError:
            return ReplayCache(capacity)
        except (OSError, ValueError, KeyError, TypeError, ProtocolError) as error:
            # Unreadable: fail closed — refuse anything that expires before now + max lifetime.
            log.error("replay cache unreadable; refusing commands issued before now",
                      extra={"detail": str(error)})
            return ReplayCache(capacity, floor_ns=self.clock.wall_ns() + 7 * 86400 * 10**9)

    def _save_cache(self) -> None:
        floor_ns, entries = self.verifier.replay_cache.snapshot()
        data = {"floor_ns": floor_ns, "nonces": [(n.hex(), e) for n, e in entries]}
        tmp = self.nonce_file.with_suffix(".tmp")
        with open(tmp, "w", encoding="ascii") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.nonce_file)

    def snapshot(self) -> dict[str, object]:
        return {"executed": self.executed, "refused": dict(self.refused),
                "remembered_nonces": len(self.verifier.replay_cache)}


def _reason(error: Exception) -> str:
    """An ack's detail: the error's class and message, within the protocol's text limit."""
    return f"{type(error).__name__}: {error}"[:MAX_TEXT]
