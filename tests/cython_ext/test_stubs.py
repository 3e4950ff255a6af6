"""The .pyi stubs describe exactly the compiled classes' public API (mypy relies on them)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import cython_ext

STUBS = sorted(Path(cython_ext.__file__).parent.glob("*.pyi"))


def test_every_extension_module_has_a_stub() -> None:
    package = Path(cython_ext.__file__).parent
    assert {p.stem for p in package.glob("*.pyx")} == {p.stem for p in STUBS}


@pytest.mark.parametrize("stub", STUBS, ids=lambda p: p.stem)
def test_stub_classes_match_runtime(stub: Path) -> None:
    module = importlib.import_module(f"cython_ext.{stub.stem}")
    tree = ast.parse(stub.read_text())
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert classes or functions
    for name in functions:
        assert callable(getattr(module, name)), name
    for cls in classes:
        runtime = getattr(module, cls.name)
        declared = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
        public = {name for name in dir(runtime) if not name.startswith("_")}
        assert public == {name for name in declared if not name.startswith("_")}, cls.name
        for dunder in declared - {"__init__"}:
            if dunder.startswith("__"):
                assert hasattr(runtime, dunder), f"{cls.name}.{dunder}"


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def test_reference_has_the_same_public_api_as_the_compiled_classes() -> None:
    from cython_ext import features, geo, reference, ring
    from cython_ext import spec as sp

    pairs = [
        (ring.RingBuffer(4), reference.RingBuffer(4)),
        (features.FeatureSet([sp.Mean()], 4), reference.FeatureSet([sp.Mean()], 4)),
        (geo.HaversineDistance(), reference.HaversineDistance()),
        (geo.Dwell(5.0), reference.Dwell(5.0)),
    ]
    for fast, slow in pairs:
        assert _public(fast) == _public(slow), type(fast).__name__
