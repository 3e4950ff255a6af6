"""TLS material checked when a config is loaded, not when the first connection fails.

`check_tls_files` loads the CA, certificate and key the way the MQTT clients will (the ssl
module: `load_verify_locations`, `load_cert_chain`), so a missing or unreadable file, a key file
that holds a certificate, a key that does not match the certificate, an encrypted key (which
would make OpenSSL prompt on a terminal) or a CA file without a CA certificate is a
`ConfigError` naming the config key and the file — exit 2, not a traceback from paho or ssl.
Validity dates are returned as findings: each caller decides whether they refuse (the receiver)
or warn (the agent, whose clock may not be set yet at boot and which keeps queueing on flash).
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lienwatch.errors import ConfigError

MAX_PEM_BYTES = 1024 * 1024  # a CA bundle is tens of kB; more is not a PEM file we wrote


@dataclass(frozen=True, slots=True)
class CertDates:
    """A certificate's validity window (seconds since the epoch) and the key naming it."""

    key: str
    path: Path
    not_before_s: float
    not_after_s: float
    not_before: str
    not_after: str

    def problem(self, now_s: float) -> str | None:
        """Why the certificate is not valid at `now_s`, or None."""
        if now_s < self.not_before_s:
            return f"{self.key}: {self.path} is not valid yet (valid from {self.not_before})"
        if now_s > self.not_after_s:
            return f"{self.key}: {self.path} expired on {self.not_after}"
        return None


def readable_file(path: Path, key: str) -> bytes:
    """The bytes of a file the config names; ConfigError naming `key` if it cannot be read."""
    if not str(path):
        raise ConfigError(f"{key} must name a file")
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # a FIFO would block the open; a device could be endless
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise ConfigError(f"{key}: {path} is {kind}")
        with path.open("rb") as stream:
            data = stream.read(MAX_PEM_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} does not exist") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the name
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise ConfigError(f"{key}: cannot read {path}: {reason} (running as uid {os.getuid()})") from None
    if len(data) > MAX_PEM_BYTES:
        raise ConfigError(f"{key}: {path} is over {MAX_PEM_BYTES} bytes, not a PEM file")
    return data


def check_ca_file(path: Path, key: str) -> list[CertDates]:
    """The CA file must hold at least one CA certificate; returns the CAs' validity windows."""
    data = readable_file(path, key)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(f"{key}: {path} holds no PEM certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError) as error:
        raise ConfigError(f"{key}: {path} is not a usable CA certificate file ({_reason(error)})") from None
    cas = context.get_ca_certs()  # only certificates with basicConstraints CA:TRUE (or legacy v1)
    if not cas:
        raise ConfigError(f"{key}: {path} holds no CA certificate (a leaf certificate? "
                          "it must be the CA that signed the peer's certificate)")
    return [_dates(key, path, ca) for ca in cas]


def check_cert_and_key(cert_path: Path, key_path: Path, cert_key: str, key_key: str) -> CertDates | None:
    """The certificate and its private key must load together; returns the certificate's dates."""
    cert_pem = readable_file(cert_path, cert_key)
    key_pem = readable_file(key_path, key_key)
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise ConfigError(f"{cert_key}: {cert_path} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in key_pem:
        found = "a certificate" if b"BEGIN CERTIFICATE" in key_pem else "no PEM private key"
        raise ConfigError(f"{key_key}: {key_path} holds {found}, not a private key")
    if b"ENCRYPTED" in key_pem:
        raise ConfigError(f"{key_key}: {key_path} is encrypted; the service starts unattended, so "
                          "store the key unencrypted, readable only by the service user (mode 0600)")
    dates = _leaf_dates(cert_key, cert_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # A password callback, so an encrypted key fails here instead of prompting on a terminal.
        context.load_cert_chain(str(cert_path), str(key_path), password=_no_password)
    except (ssl.SSLError, ValueError, TypeError) as error:
        reason = _reason(error)
        if "KEY_VALUES_MISMATCH" in reason or "key values mismatch" in reason:
            raise ConfigError(
                f"{key_key}: {key_path} is not the private key of {cert_key} {cert_path}") from None
        raise ConfigError(f"{cert_key}/{key_key}: {cert_path} and {key_path} do not load as a "
                          f"certificate and its key ({reason})") from None
    return dates


def check_tls_files(ca: tuple[str, Path], cert: tuple[str, Path], key: tuple[str, Path]) -> list[CertDates]:
    """Check a client's CA, certificate and key (each given as (config key, path)); the dates of all."""
    dates = check_ca_file(ca[1], ca[0])
    leaf = check_cert_and_key(cert[1], key[1], cert[0], key[0])
    return [*dates, *([leaf] if leaf else [])]


def _no_password() -> bytes:
    raise ConfigError("encrypted private keys are not supported")


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None)  # not every SSLError has library/reason set
    if isinstance(error, ssl.SSLError) and reason:
        return f"{getattr(error, 'library', None) or 'ssl'}: {reason}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _dates(key: str, path: Path, decoded: Mapping[str, object]) -> CertDates:
    before, after = str(decoded.get("notBefore", "")), str(decoded.get("notAfter", ""))
    try:
        return CertDates(key, path, ssl.cert_time_to_seconds(before), ssl.cert_time_to_seconds(after),
                         before, after)
    except ValueError:
        raise ConfigError(f"{key}: {path} has unreadable validity dates ({before!r}, {after!r})") from None


def _leaf_dates(key: str, path: Path) -> CertDates | None:
    """The first certificate's dates. The ssl module has no public decoder of a certificate file;
    `_ssl._test_decode_cert` (what `SSLSocket.getpeercert` returns, from a file) is the one CPython
    has had since 2.x. Without it the dates are not checked (the TLS handshake still is)."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:  # pragma: no cover - every CPython has it
        return None
    try:
        decoded = decode(str(path))
    except (ssl.SSLError, OSError, ValueError) as error:
        raise ConfigError(f"{key}: {path} is not a readable certificate ({_reason(error)})") from None
    return _dates(key, path, decoded)
