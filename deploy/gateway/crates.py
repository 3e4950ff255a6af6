"""Debian's packages of the Rust crates a build needs.

`deploy/gateway/gateway.sh` cross-builds PyPI sdists with Rust extensions (cbor2 on armhf) offline
against Debian's crates (`librust-NAME-dev`, other series as `librust-NAME-SERIES-dev`), unpacked
into a cargo directory registry. The sdist's Cargo.lock names crates.io's versions, and Debian's
crates can depend on other versions than upstream's (its zerocopy-derive 0.8.26 uses syn 3), so
gateway.sh fetches the packages of what the lock names, then of what the fetched crates need,
until nothing is missing. INDEX is a file of `PACKAGE VERSION` lines, what the apt lists offer.

    python crates.py locked INDEX Cargo.lock    a package for each registry crate of the lock (its series)
    python crates.py needs INDEX CRATE_DIR...   a package for each non-optional (build) dependency

Prints one Debian package a line, the newest whose version meets the requirement. A dependency
only some targets have (`[target.'cfg(windows)'.dependencies]`) that Debian does not package is
left out (Debian drops other platforms' ones); any other crate without a package is an error.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

Version = tuple[int, int, int]
_NUMBERS = re.compile(r"([0-9]+)(?:\.([0-9]+|\*))?(?:\.([0-9]+|\*))?")
_SERIES = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def upstream(debian_version: str) -> Version:
    """1.0.107 of `1.0.107-1`, 0.5.0 of `0.5.0-1+really0.5.0-2+b1`, 2.7.1 of `1:2.7.1-2`."""
    text = debian_version.split(":", 1)[-1].split("+really")[-1].lstrip(".")
    match = _NUMBERS.match(text)
    if match is None:
        raise ValueError(f"not a version: {debian_version!r}")
    return tuple(int(part) if part and part != "*" else 0 for part in match.groups())  # type: ignore[return-value]


def _comparator_matches(comparator: str, version: Version) -> bool:
    comparator = comparator.strip()
    if comparator in ("", "*"):
        return True
    op = re.match(r"(\^|~|=|>=|<=|>|<)?", comparator).group(0)  # type: ignore[union-attr]
    match = _NUMBERS.match(comparator[len(op):].strip())
    if match is None:
        raise ValueError(f"not a requirement: {comparator!r}")
    parts = [part for part in match.groups() if part is not None and part != "*"]
    numbers = [int(part) for part in parts]
    base: Version = tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[assignment]
    if op in ("", "^"):
        if numbers[0] > 0 or len(numbers) == 1:
            upper: Version = (numbers[0] + 1, 0, 0)
        elif numbers[1] > 0 or len(numbers) == 2:
            upper = (0, numbers[1] + 1, 0)
        else:
            upper = (0, 0, numbers[2] + 1)
        return base <= version < upper
    if op == "~":
        upper = (numbers[0] + 1, 0, 0) if len(numbers) == 1 else (numbers[0], numbers[1] + 1, 0)
        return base <= version < upper
    if op == "=":
        return version[:len(numbers)] == tuple(numbers)
    return {">=": version >= base, "<=": version <= base, ">": version > base, "<": version < base}[op]


def meets(requirement: str, version: Version) -> bool:
    """Cargo's semantics: `1.2` is `^1.2`, comma-separated comparators all hold."""
    return all(_comparator_matches(part, version) for part in requirement.split(","))


class Index:
    """The librust-*-dev packages on offer, by crate name."""

    def __init__(self, lines: list[str]) -> None:
        self.packages: dict[str, list[tuple[Version, str]]] = {}
        for line in lines:
            package, _, version = line.partition(" ")
            if package.startswith("librust-") and package.endswith("-dev") and "+" not in package:
                try:
                    offer = upstream(version.strip())
                except ValueError:
                    continue  # a version no crate requirement can name
                self.packages.setdefault(package, []).append((offer, package))

    def pick(self, crate: str, requirement: str) -> str | None:
        name = crate.lower().replace("_", "-")
        prefix = f"librust-{name}-"
        candidates = []
        for package, offers in self.packages.items():
            middle = package[len(prefix):-len("-dev")] if package.startswith(prefix) else None
            if package == f"librust-{name}-dev" or (middle and _SERIES.fullmatch(middle)):
                candidates += [offer for offer in offers if meets(requirement, offer[0])]
        return max(candidates)[1] if candidates else None


def locked(lock: Path) -> list[tuple[str, str, bool]]:
    """(crate, the series of its locked version, required) for each registry crate of the lock."""
    found = []
    for package in tomllib.loads(lock.read_text())["package"]:
        if str(package.get("source", "")).startswith("registry+"):
            major, minor, patch = upstream(package["version"])
            series = f"{major}" if major else (f"0.{minor}" if minor else f"0.0.{patch}")
            found.append((package["name"], f"^{series}", True))
    return found


def _table(table: dict[str, Any], required: bool) -> list[tuple[str, str, bool]]:
    found = []
    for key, spec in table.items():
        if isinstance(spec, str):
            found.append((key, spec, required))
        elif not spec.get("optional", False) and "version" in spec:
            found.append((spec.get("package", key), spec["version"], required))
    return found


def needs(crate: Path) -> list[tuple[str, str, bool]]:
    """(crate, requirement, required on every target) for each non-optional dependency."""
    manifest = tomllib.loads((crate / "Cargo.toml").read_text())
    targets = [(target, False) for target in manifest.get("target", {}).values()]
    found = []
    for tables, required in [(manifest, True), *targets]:
        for kind in ("dependencies", "build-dependencies"):
            found += _table(tables.get(kind, {}), required)
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("locked", "needs"):
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    try:
        index = Index(Path(argv[1]).read_text().splitlines())
        wanted = locked(Path(argv[2])) if argv[0] == "locked" else \
            [dependency for directory in argv[2:] for dependency in needs(Path(directory))]
        picks = [(crate, requirement, required, index.pick(crate, requirement))
                 for crate, requirement, required in wanted]
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as error:
        print(f"crates.py: {argv[0]} {' '.join(argv[2:])}: {error!r}", file=sys.stderr)
        return 2
    picked, missing = set(), []
    for crate, requirement, required, package in picks:
        if package is not None:
            picked.add(package)
        elif required:
            missing.append(f"{crate} {requirement}")
    for package in sorted(picked):
        print(package)
    if missing:
        names = ", ".join(sorted(set(missing)))
        print(f"crates.py: Debian has no package of the crate {names}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
