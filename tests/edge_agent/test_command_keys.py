"""downlink.command_keys: the device's trusted command keys, read from PEM without `cryptography`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.agent.downlink import load_command_keys
from hil.services import REPO_ROOT
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError
from protocol import errors, signing
from tests.protocol import messages_fixture as mf


def openssl(*args: str, stdin: bytes = b"") -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=True).stdout


def test_key_file_from_openssl_with_two_keys_trusts_both(tmp_path: Path) -> None:
    old, new = (openssl("genpkey", "-algorithm", "ed25519") for _ in range(2))
    path = tmp_path / "command-keys.pem"
    path.write_bytes(b"# rotating: new key first\n" + openssl("pkey", "-pubout", stdin=new)
                     + b"\n# old key, remove after 2030-01-01\n" + openssl("pkey", "-pubout", stdin=old))
    keys = load_command_keys(path)
    assert keys == [signing.private_key_from_pem(pem).public_key() for pem in (new, old)]
    now = mf.T0 + 60 * 10**9
    for private in (new, old):
        verifier = signing.CommandVerifier("veh-0001", keys, ManualClock(wall_ns=now))
        assert verifier.verify(signing.sign_command(mf.command(), signing.private_key_from_pem(private))) \
            == mf.command()
    stranger = signing.CommandVerifier("veh-0001", keys, ManualClock(wall_ns=now))
    with pytest.raises(errors.BadSignatureError):
        stranger.verify(signing.sign_command(mf.command(), signing.generate_key()))


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "no PEM block found"),
    (b"not a key\n", "no PEM block found"),
    (signing.private_key_to_pem(signing.generate_key()), "PRIVATE KEY block, expected PUBLIC KEY"),
    (signing.public_key_to_pem(signing.generate_key().public_key())
     + signing.private_key_to_pem(signing.generate_key()), "line 4: a PRIVATE KEY block"),
    (signing.public_key_to_pem(signing.generate_key().public_key())[:-26], "has no -----END PUBLIC KEY-----"),
    (signing.public_key_to_pem(signing.generate_key().public_key()).replace(b"MCow", b"MC*w"), "base64"),
    ("é\n".encode(), "cannot read"),
])
def test_bad_key_file_is_a_config_error(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "command-keys.pem"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"downlink.command_keys: .*{reason}"):
        load_command_keys(path)


def test_rsa_key_file_is_a_config_error_that_names_the_algorithm(tmp_path: Path) -> None:
    path = tmp_path / "command-keys.pem"
    path.write_bytes(openssl("pkey", "-pubout", stdin=openssl("genpkey", "-algorithm", "RSA",
                                                             "-pkeyopt", "rsa_keygen_bits:1024")))
    with pytest.raises(ConfigError, match="an RSA public key, not Ed25519"):
        load_command_keys(path)


def test_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_command_keys(tmp_path / "absent.pem")


def test_agent_process_does_not_import_cryptography() -> None:
    # `cryptography` maps ~8 MB of Rust extension; the agent verifies with PyNaCl (~2.4 MB).
    probe = ("import sys, edge.agent.runtime; "
             "print('cryptography' in sys.modules, 'nacl.signing' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "True"]
