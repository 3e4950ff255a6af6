"""Build the Cython hot path (cython_ext/*.pyx, protocol/*.pyx) as part of every install and wheel.

Everything else about the distribution lives in pyproject.toml; this file exists only because
compiled extensions need a little code: discovering the .pyx modules, numpy's include path and
a clear failure when no C compiler is present.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from glob import glob

from setuptools import Extension, setup


def _require_c_compiler() -> None:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        sys.exit(
            f"lienwatch: no C compiler found ({cc!r}). The Cython extensions in cython_ext/ must be "
            "compiled: install one (Debian/Ubuntu: `apt-get install build-essential python3-dev`) "
            "and run the install again."
        )


# The extensions must round as CPython (and their pure-Python or numpy oracles) do: two roundings,
# never one fused multiply-add. GCC contracts `a * b + c` by default where FMA exists (AArch64, and
# x86-64 with -march=native): canframe's `raw * factor + offset` and features' EWMA were 1 ulp off
# on arm64 (found by `make gateway-test`), and simplify computes numpy's distances operation by
# operation (cloud/analytics/geo.py), so no extension may contract.
_FP_ARGS = ["-ffp-contract=off"]
_PYX = glob(os.path.join("cython_ext", "*.pyx")) + glob(os.path.join("protocol", "*.pyx"))


def _extensions() -> list[Extension]:
    import numpy
    from Cython.Build import cythonize

    # Portable by default so the same sources build on ARM gateways; LIENWATCH_NATIVE=1 opts in
    # to -march=native for a board-specific build.
    compile_args = ["-O3", *_FP_ARGS]
    if os.environ.get("LIENWATCH_NATIVE") == "1":
        compile_args.append("-march=native")
    extensions = [
        Extension(
            name=path[:-4].replace(os.sep, "."),
            sources=[path],
            include_dirs=[numpy.get_include()],
            extra_compile_args=compile_args,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for path in sorted(_PYX)
    ]
    return cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
    )


_BUILDING = not any(arg in sys.argv for arg in ("egg_info", "dist_info", "--version", "clean"))
if _BUILDING:
    _require_c_compiler()
setup(ext_modules=_extensions())
