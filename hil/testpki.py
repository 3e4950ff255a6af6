"""A stand-in for /etc/lienwatch/ with the test PKI and the broker's ACLs, for tests, demo and bench."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from lienwatch.errors import ServiceError

REPO_ROOT = Path(__file__).resolve().parent.parent
ACL_FILES = ("acl", "acl-services")


def make_test_etc(etc: Path, devices: Sequence[str]) -> Path:
    """Fill `etc` like /etc/lienwatch/: pki/ from deploy/pki/make-test-pki.sh, mosquitto/ ACLs.

    `etc` is made world-traversable (mosquitto started as root drops to its own user); the keys
    below it stay readable only as make-test-pki.sh leaves them.
    """
    etc.mkdir(parents=True, exist_ok=True)
    etc.chmod(0o755)
    result = subprocess.run([str(REPO_ROOT / "deploy/pki/make-test-pki.sh"), str(etc), *devices],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"make-test-pki.sh failed: {result.stderr.strip()}")
    (etc / "mosquitto").mkdir(mode=0o755, exist_ok=True)
    for name in ACL_FILES:
        shutil.copy(REPO_ROOT / "deploy/mosquitto" / name, etc / "mosquitto" / name)
        (etc / "mosquitto" / name).chmod(0o644)
    return etc
