"""TOML as every lienwatch file reads it: `tomllib`, refusing U+0000 in any key or string.

TOML allows "\\u0000" in a string, but no file name, host name, socket, SQL text or log line can
hold one: a receiver id with a NUL fails every database write, a host with one fails every
connect, far from the file that said so. Refused here, where the file and the key are known.
"""

from __future__ import annotations

import tomllib
from typing import Any

from lienwatch.text import nul_at


class NulInTomlError(tomllib.TOMLDecodeError):
    """A key or string of a TOML document holds U+0000; every caller's TOML error handler
    already turns this into its own typed error naming the file."""


def parse_toml(text: str) -> dict[str, Any]:
    """`tomllib.loads(text)`; raises `NulInTomlError` (a `TOMLDecodeError`) naming the dotted key
    of the first key or string that holds U+0000."""
    document = tomllib.loads(text)
    where = nul_at(document)
    if where is not None:
        raise NulInTomlError(f"{where} holds U+0000 (NUL), which no setting accepts")
    return document

