"""Revoke client certificates and regenerate a CA's CRL: `lienwatch cloud pki revoke|crl`.

A CA directory holds `ca.crt` and `ca.key`, and beside them the `openssl ca` database in `ca-db/`
(`index.txt`, `serial`, `crlnumber`, `certs/SERIAL.pem`; deploy/pki/make-test-pki.sh makes this
layout, and it is created here on first use). The CRL goes to `ca.crl` in the same directory, the
file deploy/mosquitto/lienwatch.conf names as the listener's `crlfile`. mosquitto reads it at start
and on SIGHUP, so a revocation takes effect for new connections after a reload.

OpenSSL's own `openssl ca` keeps the database and signs the CRL: the cloud has no crypto library
dependency, and a hand-written CRL encoder would be a second, untested implementation of X.509.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lienwatch.errors import LienwatchError

REASONS = ("unspecified", "keyCompromise", "CACompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "certificateHold")
_SERIAL = re.compile(r"(?:0[xX])?([0-9A-Fa-f]{1,40})")
_OPENSSL_TIMEOUT_S = 30.0


class PkiError(LienwatchError):
    """A CA directory, certificate or openssl run was unusable."""


@dataclass(frozen=True)
class Crl:
    """A freshly signed CRL: where it is, how many serials it lists, when it must be renewed."""

    path: Path
    revoked: int
    next_update: str


@dataclass(frozen=True)
class Revocation:
    serial: str
    subject: str
    already_revoked: bool
    crl: Crl


def revoke(ca_dir: Path, target: str, *, reason: str = "unspecified", crl_days: int = 30,
           crl_out: Path | None = None) -> Revocation:
    """Mark the certificate `target` (a PEM file or a serial from this CA's database) revoked
    and sign a new CRL. Revoking a revoked certificate again only re-signs the CRL."""
    if reason not in REASONS:
        raise PkiError(f"--reason must be one of {', '.join(REASONS)}, not {reason!r}")
    ca = _CaDir(ca_dir)
    cert = ca.certificate(target)
    serial, subject = _serial_and_subject(cert)
    ca.check_issued(cert)
    already = serial in ca.revoked_serials()
    if not already:
        with ca.config(crl_days) as config:
            _openssl(["ca", "-batch", "-config", str(config), "-revoke", str(cert), "-crl_reason", reason])
    return Revocation(serial=serial, subject=subject, already_revoked=already,
                      crl=generate_crl(ca_dir, crl_days=crl_days, crl_out=crl_out))


def generate_crl(ca_dir: Path, *, crl_days: int = 30, crl_out: Path | None = None) -> Crl:
    """Sign a CRL of every certificate revoked in the CA's database, valid for `crl_days`.

    mosquitto refuses every client once the CRL's next update has passed: renew it well before
    (a weekly timer for the default 30 days). The file is replaced atomically."""
    if not 1 <= crl_days <= 3650:
        raise PkiError(f"--crl-days must be between 1 and 3650, not {crl_days}")
    ca = _CaDir(ca_dir)
    out = crl_out or ca.path / "ca.crl"
    if not out.parent.is_dir():
        raise PkiError(f"cannot write the CRL to {out}: {out.parent} is not a directory")
    fd, tmp_name = tempfile.mkstemp(prefix=".ca.crl.", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with ca.config(crl_days) as config:
            _openssl(["ca", "-batch", "-config", str(config), "-gencrl", "-out", str(tmp)])
        tmp.chmod(0o644)  # a CRL is public; the broker's user must read it
        next_update = _openssl(["crl", "-noout", "-nextupdate", "-in", str(tmp)]).partition("=")[2]
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return Crl(path=out, revoked=len(ca.revoked_serials()), next_update=next_update.strip())


def broker_pid(pidfile: Path) -> int:
    """The process id in mosquitto's pid file (checked before anything is revoked)."""
    try:
        text = pidfile.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise PkiError(f"cannot read the broker's pid file {pidfile}: {error}") from None
    if not text.isdigit() or not 1 < int(text) < 2**22:
        raise PkiError(f"{pidfile} does not hold a process id (got {text[:40]!r})")
    pid = int(text)
    try:  # a stale pid file may name some other process now: never SIGHUP that one
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        raise PkiError(f"no process {pid} (from {pidfile}) is running") from None
    except OSError:
        return pid  # no procfs here: trust the pid file
    if name != "mosquitto":
        raise PkiError(f"process {pid} (from {pidfile}) is {name!r}, not mosquitto")
    return pid


def reload_broker(pid: int) -> None:
    """SIGHUP mosquitto: it rereads its config and CRL files (new connections are checked)."""
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as error:
        raise PkiError(f"cannot signal the broker (pid {pid}): {error.strerror}") from None


class _CaDir:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        for name in ("ca.crt", "ca.key"):
            if not (self.path / name).is_file():
                raise PkiError(f"{path} is not a CA directory: {name} is missing (--ca-dir names the "
                               "directory holding ca.crt and ca.key)")
        certified = _openssl(["x509", "-noout", "-pubkey", "-in", str(self.path / "ca.crt")],
                             what=f"{self.path / 'ca.crt'} is not a PEM certificate")
        held = _openssl(["pkey", "-pubout", "-in", str(self.path / "ca.key")],
                        what=f"{self.path / 'ca.key'} is not an unencrypted PEM private key")
        if certified != held:
            raise PkiError(f"{self.path / 'ca.key'} is not the key of {self.path / 'ca.crt'}")
        self.db = self.path / "ca-db"
        try:
            (self.db / "certs").mkdir(parents=True, exist_ok=True, mode=0o700)
            for name, initial in (("index.txt", ""), ("serial", "1000\n"), ("crlnumber", "1000\n")):
                if not (self.db / name).exists():
                    (self.db / name).write_text(initial)
        except OSError as error:
            raise PkiError(f"cannot set up the CA database in {self.db}: {error}") from None

    def certificate(self, target: str) -> Path:
        """The PEM file `target` names: a path, or a serial issued from this CA's database."""
        if Path(target).is_file():
            return Path(target)
        match = _SERIAL.fullmatch(target.strip())
        if match is None:
            raise PkiError(f"{target!r} is neither a certificate file nor a hexadecimal serial")
        serial = match.group(1).upper().lstrip("0") or "0"
        for candidate in self.db.glob("certs/*.pem"):
            if candidate.stem.upper().lstrip("0") == serial:
                return candidate
        raise PkiError(f"serial {target} was not issued from {self.db}; pass the certificate file")

    def check_issued(self, cert: Path) -> None:
        # -no_check_time: an expired certificate may still be revoked (and should be, when stolen).
        try:
            _openssl(["verify", "-no_check_time", "-CAfile", str(self.path / "ca.crt"), str(cert)])
        except PkiError:
            raise PkiError(f"{cert} was not issued by {self.path / 'ca.crt'}: revoking it there would "
                           "change nothing") from None

    def revoked_serials(self) -> set[str]:
        try:
            lines = (self.db / "index.txt").read_text().splitlines()
        except OSError as error:
            raise PkiError(f"cannot read {self.db / 'index.txt'}: {error.strerror}") from None
        return {_normal_serial(fields[3]) for fields in (line.split("\t") for line in lines)
                if len(fields) >= 4 and fields[0] == "R"}

    def config(self, crl_days: int) -> _TempConfig:
        return _TempConfig(f"""[ca]
default_ca = lienwatch
[lienwatch]
dir = {self.path}
database = $dir/ca-db/index.txt
serial = $dir/ca-db/serial
crlnumber = $dir/ca-db/crlnumber
new_certs_dir = $dir/ca-db/certs
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_days = 825
default_crl_days = {crl_days}
unique_subject = no
policy = anything
[anything]
organizationName = optional
commonName = supplied
""")


class _TempConfig:
    """An `openssl ca` config file that exists for one `with` block."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.path: Path | None = None

    def __enter__(self) -> Path:
        fd, name = tempfile.mkstemp(prefix="lienwatch-ca-", suffix=".cnf")
        with os.fdopen(fd, "w") as file:
            file.write(self.text)
        self.path = Path(name)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _serial_and_subject(cert: Path) -> tuple[str, str]:
    out = _openssl(["x509", "-noout", "-serial", "-subject", "-nameopt", "RFC2253", "-in", str(cert)],
                   what=f"{cert} is not a PEM certificate")
    fields = dict(line.partition("=")[::2] for line in out.splitlines())
    return _normal_serial(fields.get("serial", "")), fields.get("subject", "").strip()


def _normal_serial(text: str) -> str:
    return text.strip().upper().lstrip("0") or "0"


def _openssl(args: Sequence[str], *, what: str | None = None) -> str:
    binary = shutil.which("openssl")
    if binary is None:
        raise PkiError("the openssl command is not installed (Debian: apt-get install openssl)")
    try:
        result = subprocess.run([binary, *args], capture_output=True, text=True, check=False,
                                timeout=_OPENSSL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PkiError(f"openssl {args[0]} did not finish within {_OPENSSL_TIMEOUT_S:.0f} s") from None
    if result.returncode != 0:
        detail = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "")
        raise PkiError(what or f"openssl {args[0]} failed: {detail.strip()}")
    return result.stdout


# ---------------------------------------------------------------------------------------------
# CLI: `lienwatch cloud pki ...` (registered by cloud/cli.py)


def _crl_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError(f"must be between 1 and 3650 days, not {days}")
    return days


def register(cloud: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from lienwatch.cli import lazy

    pki = cloud.add_parser("pki", help="Revoke device or service certificates (CRL for the broker).")
    actions = pki.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    revoke_cmd = actions.add_parser("revoke", help="Revoke a certificate and regenerate the CRL.")
    revoke_cmd.add_argument("certificate", metavar="CERT|SERIAL",
                            help="the certificate file, or its serial (hex) in the CA's database")
    revoke_cmd.add_argument("--reason", choices=REASONS, default="unspecified", help="CRL reason code")
    crl_cmd = actions.add_parser("crl", help="Regenerate the CRL (renew it before its next update).")
    for command in (revoke_cmd, crl_cmd):
        command.add_argument("--ca-dir", required=True, type=Path,
                             help="directory with ca.crt, ca.key and the ca-db/ database")
        command.add_argument("--crl-days", type=_crl_days, default=30,
                             help="days until the CRL's next update (default 30)")
        command.add_argument("--crl-out", type=Path, help="where to write the CRL (default CA_DIR/ca.crl)")
        command.add_argument("--reload-pidfile", type=Path,
                             help="SIGHUP the mosquitto whose pid this file holds, so it rereads the CRL")
        command.set_defaults(handler=lazy("cloud.pki:run_pki"))


def run_pki(args: argparse.Namespace) -> int:
    pid = broker_pid(args.reload_pidfile) if args.reload_pidfile is not None else None
    if args.pki_command == "revoke":
        done = revoke(args.ca_dir, args.certificate, reason=args.reason, crl_days=args.crl_days,
                      crl_out=args.crl_out)
        state = "was already revoked" if done.already_revoked else "revoked"
        print(f"serial {done.serial} ({done.subject}) {state}")
        crl = done.crl
    else:
        crl = generate_crl(args.ca_dir, crl_days=args.crl_days, crl_out=args.crl_out)
    print(f"CRL {crl.path} signed: {crl.revoked} revoked certificate(s), next update {crl.next_update} "
          "(renew it before then: an expired CRL locks every client out)")
    if pid is not None:
        reload_broker(pid)
        print(f"sent SIGHUP to mosquitto (pid {pid}): new connections are checked against this CRL")
    else:
        print("next: install it as the broker listener's crlfile and reload mosquitto "
              "(`systemctl reload mosquitto`, i.e. SIGHUP); new connections are then checked against it")
    print("a connection that is already open stays open until it reconnects: restart mosquitto "
          "(sessions persist) to cut it at once, and `lienwatch cloud devices remove` the device")
    return 0
