"""Emergency override codes: RFC 4226 HOTP, counter window, secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.override import OverrideSecretError, hotp, load_secret, match_counter

RFC_SECRET = b"12345678901234567890"
# RFC 4226 Appendix D: the 6-digit HOTP values of counters 0..9.
RFC_CODES = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
             "520489"]


def test_hotp_matches_rfc_4226_appendix_d() -> None:
    assert [hotp(RFC_SECRET, counter, digits=6) for counter in range(10)] == RFC_CODES


def test_match_counter_accepts_the_window_only() -> None:
    assert match_counter(RFC_SECRET, hotp(RFC_SECRET, 5), 3, look_ahead=3) == 5
    assert match_counter(RFC_SECRET, hotp(RFC_SECRET, 6), 3, look_ahead=3) is None
    assert match_counter(RFC_SECRET, hotp(RFC_SECRET, 2), 3, look_ahead=3) is None
    for garbage in ("", "1234567", "123456789", "１２３４５６７８", "12 45678", "-1234567"):
        assert match_counter(RFC_SECRET, garbage, 0) is None


def test_secret_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "secret"
    good.write_text("00" * 32 + "\n")
    assert load_secret(good) == bytes(32)
    for text, message in (("zz" * 32, "hex digits"), ("00" * 8, "16..64 bytes"), ("", "16..64 bytes")):
        good.write_text(text)
        with pytest.raises(OverrideSecretError, match=message):
            load_secret(good)
    with pytest.raises(OverrideSecretError, match="cannot read"):
        load_secret(tmp_path / "missing")
