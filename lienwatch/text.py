"""U+0000 in values read from outside: no file name, socket, SQL text parameter or log line can
hold one, so each boundary (TOML files, API requests) refuses it where it can say where."""

from __future__ import annotations


def nul_at(value: object, path: str = "") -> str | None:
    """Where the first U+0000 in `value` (a string, or lists, tuples and dicts of them) is, as a
    dotted path from `path` (`a.b[1]`; `path` itself for `value`), or None if it holds none."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return inner.replace("\x00", "\\u0000")
            found = nul_at(item, inner)
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = nul_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
