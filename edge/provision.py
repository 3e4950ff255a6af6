"""Give a gateway its identity: `lienwatch edge provision` and `lienwatch edge install-cert`.

`provision` runs ON the device: it makes the device key there (EC P-256, 0600, it never leaves
the device), a certificate signing request whose common name is the device id, and the agent
config from a template (the shipped example config: device id, broker host, VIN and time zone
filled in, then checked against the agent's schema). The CSR goes to the cloud, where
`lienwatch cloud devices add --csr` signs it with the device CA and registers the device; the
signed certificate comes back and `install-cert` checks it (issued by the pinned CA, for this
key, CN = device id) before putting it where the agent config names it.

OpenSSL's command-line tool does the key and CSR work, as on the cloud side (cloud/pki.py):
the edge needs no crypto library beyond what Python's ssl module already links.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lienwatch.errors import LienwatchError
from lienwatch.tomlfile import parse_toml

DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # as cloud.store.devices (the broker's user name)
VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[?[0-9A-Fa-f:.]+\]?")
_OPENSSL_TIMEOUT_S = 60.0
AGENT_GROUP = "lienwatch"  # the system group the Debian package's agent runs as


class ProvisionError(LienwatchError):
    """Provisioning input (device id, template, certificate) was unusable."""


@dataclass(frozen=True)
class Provisioned:
    key: Path
    csr: Path
    config: Path
    public_key_sha256: str


def provision(*, device_id: str, template: Path, etc: Path, host: str, port: int = 8883, vin: str = "",
              time_zone: str = "UTC", state_dir: Path | None = None, force: bool = False) -> Provisioned:
    """Make etc/pki/device.key, etc/pki/device.csr and etc/agent.toml for `device_id`. Run as root
    where the `lienwatch` group exists, the key and config are root's, readable by that group.

    An existing key is never replaced unless `force` (a new key needs a new certificate, and the
    old one should then be revoked: docs/gateway.md, field replacement)."""
    check_device_id(device_id)
    vin = vin.strip().upper()
    if vin and not VIN.fullmatch(vin):
        raise ProvisionError(f"VIN {vin!r} is invalid: 17 characters, digits and A-Z without I, O, Q")
    if not HOST.fullmatch(host):
        raise ProvisionError(f"broker host {host!r} is not a host name or address")
    _check_time_zone(time_zone)
    if not 1 <= port <= 65535:
        raise ProvisionError(f"broker port {port} is not between 1 and 65535")
    etc = etc.absolute()
    values: dict[str, str | int] = {
        "device.id": device_id, "uplink.mqtt.host": host, "uplink.mqtt.port": port,
        "uplink.mqtt.ca_file": str(etc / "pki/ca.crt"), "uplink.mqtt.cert_file": str(etc / "pki/device.crt"),
        "uplink.mqtt.key_file": str(etc / "pki/device.key"),
        "downlink.command_keys": str(etc / "command-keys.pem"),
        "vehicle.vin": vin, "vehicle.time_zone": time_zone}
    if state_dir is not None:
        values["agent.state_dir"] = str(state_dir.absolute())
    config_text = render_config(template, values)
    pki = etc / "pki"
    key, csr, config = pki / "device.key", pki / "device.csr", etc / "agent.toml"
    if key.exists() and not force:
        raise ProvisionError(f"{key} exists: this device already has a key (pass --force to make a new one; "
                             "its certificate must then be replaced and the old one revoked)")
    try:
        pki.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ProvisionError(f"cannot create {pki}: {error.strerror}") from None
    fd, tmp_key = tempfile.mkstemp(prefix=".device.key.", dir=pki)  # 0600 from the start
    os.close(fd)
    try:
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", tmp_key])
        os.chmod(tmp_key, 0o600)
        _openssl(["req", "-new", "-key", tmp_key, "-subj", f"/CN={device_id}", "-sha256", "-out", str(csr)])
        os.replace(tmp_key, key)
    finally:
        Path(tmp_key).unlink(missing_ok=True)
    csr.chmod(0o644)
    _write_atomic(config, config_text, 0o640)
    for path in (key, config):
        _share_with_agent(path)
    return Provisioned(key=key, csr=csr, config=config, public_key_sha256=public_key_sha256(key))


def install_certificate(*, cert: Path, etc: Path, ca_file: Path | None = None) -> Path:
    """Check `cert` (issued by the pinned CA, for etc/pki/device.key, CN = the config's device id)
    and copy it to etc/pki/device.crt (and the CA to etc/pki/ca.crt when given)."""
    config = _read_config(etc / "agent.toml")
    device_id = str(config.get("device", {}).get("id", ""))
    key = etc / "pki" / "device.key"
    if not key.is_file():
        raise ProvisionError(f"{key} is missing: run `lienwatch edge provision` on this device first")
    ca = ca_file or etc / "pki" / "ca.crt"
    if not ca.is_file():
        raise ProvisionError(f"the broker's CA {ca} is missing: pass --ca-file")
    subject = _openssl(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", str(cert)],
                       what=f"{cert} is not a PEM certificate")
    cn = dict(part.partition("=")[::2] for part in subject.partition("=")[2].strip().split(",")).get("CN")
    if cn != device_id:
        raise ProvisionError(f"{cert} is for {cn!r}, but this device is {device_id!r} (etc/agent.toml)")
    certified = _openssl(["x509", "-noout", "-pubkey", "-in", str(cert)])
    if certified != _openssl(["pkey", "-pubout", "-in", str(key)]):
        raise ProvisionError(f"{cert} certifies another key than {key}: not made from this device's CSR")
    try:
        _openssl(["verify", "-purpose", "sslclient", "-CAfile", str(ca), str(cert)])
    except ProvisionError:
        raise ProvisionError(f"{cert} is not a valid client certificate from {ca} (expired, or another CA)") \
            from None
    target = etc / "pki" / "device.crt"
    _write_atomic(target, cert.read_text(), 0o644)
    if ca_file is not None:
        _write_atomic(etc / "pki" / "ca.crt", ca_file.read_text(), 0o644)
    return target


def render_config(template: Path, values: Mapping[str, str | int]) -> str:
    """The template with each dotted key's value replaced on its own line (comments kept), checked
    by the agent's config schema. Every key must already be in the template, in its table."""
    try:
        text = template.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ProvisionError(f"cannot read the config template {template}: {error}") from None
    lines = text.splitlines(keepends=True)
    table = ""
    found: set[str] = set()
    for index, line in enumerate(lines):
        stripped = line.strip()
        header = re.fullmatch(r"\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?(\s*#.*)?", stripped)
        if header:
            table = header.group(1)
            continue
        match = re.match(r"([A-Za-z0-9_-]+)\s*=", stripped)
        if match is None or table.startswith(("sources", "detectors")):
            continue
        dotted = f"{table}.{match.group(1)}"
        if dotted in values and dotted not in found:
            value = values[dotted]
            shown = str(value) if isinstance(value, int) else _toml_string(value)
            lines[index] = f"{match.group(1)} = {shown}\n"
            found.add(dotted)
    missing = sorted(set(values) - found)
    if missing:
        raise ProvisionError(f"the config template {template} has no line for {', '.join(missing)}")
    rendered = "".join(lines)
    from edge.agent.config import parse_config

    try:
        parse_config(parse_toml(rendered), template)
    except tomllib.TOMLDecodeError as error:
        raise ProvisionError(f"the config template {template} is not TOML: {error}") from None
    return rendered


def public_key_sha256(key: Path) -> str:
    """SHA-256 of the DER public key (what `lienwatch cloud devices add` prints for the CSR)."""
    der = subprocess.run([_openssl_binary(), "pkey", "-pubout", "-outform", "DER", "-in", str(key)],
                         capture_output=True, check=False, timeout=_OPENSSL_TIMEOUT_S)
    if der.returncode != 0:
        raise ProvisionError(f"cannot read the key {key}")
    import hashlib

    return hashlib.sha256(der.stdout).hexdigest()


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID.fullmatch(device_id):
        raise ProvisionError(f"device id {device_id!r} is invalid: 1-64 characters of a-z 0-9 . _ -, "
                             "starting with a letter or digit (it becomes the certificate's common name)")
    return device_id


def _check_time_zone(name: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ProvisionError(f"time zone {name!r} is not an IANA zone name (e.g. Europe/Berlin)") from None


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_config(path: Path) -> dict[str, dict[str, object]]:
    try:
        return parse_toml(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ProvisionError(f"cannot read {path}: {error} (run `lienwatch edge provision` first)") from None


def _write_atomic(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _share_with_agent(path: Path) -> None:
    """As root on a packaged gateway: root owns the key and config, the agent's group reads them."""
    if os.geteuid() != 0:
        return
    import grp

    try:
        gid = grp.getgrnam(AGENT_GROUP).gr_gid
    except KeyError:
        return  # not the Debian package's layout: leave the file to its (root) owner only
    os.chown(path, 0, gid)
    path.chmod(0o640)


def _openssl_binary() -> str:
    binary = shutil.which("openssl")
    if binary is None:
        raise ProvisionError("the openssl command is not installed (Debian: apt-get install openssl)")
    return binary


def _openssl(args: Sequence[str], *, what: str | None = None) -> str:
    try:
        result = subprocess.run([_openssl_binary(), *args], capture_output=True, text=True, check=False,
                                timeout=_OPENSSL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"openssl {args[0]} did not finish within {_OPENSSL_TIMEOUT_S:.0f} s") from None
    if result.returncode != 0:
        detail = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "")
        raise ProvisionError(what or f"openssl {args[0]} failed: {detail.strip()}")
    return result.stdout


# ---------------------------------------------------------------------------------------------
# CLI handlers (registered by edge/cli.py)


TEMPLATES = (Path("/opt/lienwatch/share/agent.example.toml"),  # the Debian package's (docs/gateway.md)
             Path(__file__).resolve().parent.parent / "deploy/agent.example.toml")  # a checkout's


def default_template() -> Path:
    for path in TEMPLATES:
        if path.is_file():
            return path
    raise ProvisionError(f"no config template at {' or '.join(map(str, TEMPLATES))}: pass --template")


def run_provision(args: argparse.Namespace) -> int:
    template = Path(args.template) if args.template else default_template()
    done = provision(device_id=args.id, template=template, etc=Path(args.etc), host=args.host,
                     port=args.port, vin=args.vin or "", time_zone=args.time_zone,
                     state_dir=Path(args.state_dir) if args.state_dir else None, force=args.force)
    print(f"device key {done.key} made on this device (0600; it never leaves it)")
    print(f"public key SHA-256 {done.public_key_sha256}")
    print(f"agent config {done.config}")
    print(f"CSR {done.csr} (CN={args.id}): have it signed with `lienwatch cloud devices add --id {args.id} "
          f"--csr device.csr --ca-dir ...`, then `lienwatch edge install-cert --cert device.crt`")
    return 0


def run_install_cert(args: argparse.Namespace) -> int:
    target = install_certificate(cert=Path(args.cert), etc=Path(args.etc),
                                 ca_file=Path(args.ca_file) if args.ca_file else None)
    print(f"certificate installed as {target}; start the agent: systemctl restart lienwatch-agent")
    return 0
