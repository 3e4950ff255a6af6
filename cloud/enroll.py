"""Sign a device's CSR with the device CA: `lienwatch cloud devices add|replace --csr`.

The device made its key itself (`lienwatch edge provision`); only its CSR reaches the cloud. A CSR
is accepted when its self-signature verifies, its subject's common name is the device id being
registered and its key is EC P-256 or RSA >= 2048 bits. The certificate is issued through the CA's
`openssl ca` database (cloud/pki.py's layout), so it can be revoked later, with client-only
extensions chosen here (never copied from the CSR). Replacing a device's tracker revokes every
other valid certificate of that device id (reason superseded) and re-signs the CRL.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cloud.pki import Crl, PkiError, _CaDir, _openssl, _serial_and_subject, generate_crl

CLIENT_EXTENSIONS = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
"""
MAX_CSR_BYTES = 16384


@dataclass(frozen=True)
class Issued:
    cert: Path
    serial: str
    fingerprint: str  # SHA-256 of the DER certificate, lower-case hex (devices.cert_fingerprint)


def check_csr(csr: Path, device_id: str) -> None:
    """Refuse a CSR that is not PEM, not self-signed by its key, not for `device_id`, or weak."""
    try:
        size = csr.stat().st_size
    except OSError as error:
        raise PkiError(f"cannot read the CSR {csr}: {error.strerror}") from None
    if size > MAX_CSR_BYTES:
        raise PkiError(f"{csr} is {size} bytes: not a CSR (at most {MAX_CSR_BYTES})")
    _openssl(["req", "-verify", "-noout", "-in", str(csr)],
             what=f"{csr} is not a PEM certificate request whose signature verifies")
    subject = _openssl(["req", "-noout", "-subject", "-nameopt", "RFC2253", "-in", str(csr)])
    names = [part.partition("=")[::2] for part in subject.partition("=")[2].strip().split(",")]
    cns = [value for key, value in names if key.strip() == "CN"]
    if cns != [device_id]:
        shown = cns[0] if cns else None
        raise PkiError(f"the CSR's common name is {shown!r}, not the device id {device_id!r}")
    text = _openssl(["req", "-noout", "-text", "-in", str(csr)])
    if "prime256v1" in text or "P-256" in text:
        return
    bits = re.search(r"Public-Key: \((\d+) bit\)", text)
    if "rsaEncryption" in text and bits and int(bits.group(1)) >= 2048:
        return
    raise PkiError(f"the CSR's key must be EC P-256 or RSA >= 2048 bits ({csr})")


def sign_csr(ca_dir: Path, csr: Path, device_id: str, cert_out: Path, *, days: int = 825) -> Issued:
    """Issue the device certificate for `csr` from the CA in `ca_dir`, written to `cert_out`."""
    if not 1 <= days <= 3650:
        raise PkiError(f"--days must be between 1 and 3650, not {days}")
    check_csr(csr, device_id)
    ca = _CaDir(ca_dir)
    with tempfile.TemporaryDirectory(prefix="lienwatch-enroll-") as work:
        ext = Path(work) / "client.ext"
        ext.write_text(CLIENT_EXTENSIONS)
        with ca.config(30) as config:
            _openssl(["ca", "-batch", "-config", str(config), "-in", str(csr), "-extfile", str(ext),
                      "-subj", f"/CN={device_id}", "-days", str(days), "-notext", "-out", str(cert_out)])
    cert_out.chmod(0o644)
    serial, _ = _serial_and_subject(cert_out)
    return Issued(cert=cert_out, serial=serial, fingerprint=fingerprint(cert_out))


def fingerprint(cert: Path) -> str:
    der = _openssl(["x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)])
    return der.partition("=")[2].strip().replace(":", "").lower()


def valid_serials(ca_dir: Path, device_id: str) -> list[str]:
    """Serials of the certificates for `device_id` that the CA's database holds as valid."""
    ca = _CaDir(ca_dir)
    out = []
    for line in (ca.db / "index.txt").read_text().splitlines():
        fields = line.split("\t")
        named = len(fields) >= 6 and re.search(rf"/CN={re.escape(device_id)}(/|$)", fields[5])
        if named and fields[0] == "V":
            out.append(fields[3].upper().lstrip("0") or "0")
    return out


def revoke_others(ca_dir: Path, device_id: str, keep_serial: str) -> tuple[list[str], Crl]:
    """Revoke (superseded) every valid certificate of `device_id` but `keep_serial`; new CRL."""
    from cloud.pki import revoke

    revoked = []
    for serial in valid_serials(ca_dir, device_id):
        if serial != keep_serial:
            revoke(ca_dir, serial, reason="superseded")
            revoked.append(serial)
    return revoked, generate_crl(ca_dir)


def public_key_sha256(csr: Path) -> str:
    """SHA-256 of the CSR's DER public key: the same figure `lienwatch edge provision` prints."""
    pem = _openssl(["req", "-noout", "-pubkey", "-in", str(csr)])
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    import base64

    return hashlib.sha256(base64.b64decode(body)).hexdigest()
