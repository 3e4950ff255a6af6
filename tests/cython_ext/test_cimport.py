"""Another Cython module can cimport the fast API (.pxd) and drive it without the GIL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

CONSUMER = textwrap.dedent("""
    # cython: language_level=3
    from cython_ext.features cimport FeatureSet
    from cython_ext.ring cimport RingBuffer, ring_t, ring_push, ring_oldest

    def drive(FeatureSet fs, RingBuffer ring, long n):
        cdef long i
        cdef double row[2]
        cdef ring_t* r = &ring.r
        with nogil:
            for i in range(n):
                fs.push_sample(i * 1000, <double>(i % 10))
                ring_push(r, i * 1000, <double>i)
            fs.read_row(row)
        return row[0], row[1], r.v[ring_oldest(r)]
""")

SETUP = textwrap.dedent("""
    import numpy
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    setup(ext_modules=cythonize([Extension("consumer", ["consumer.pyx"], include_dirs=[numpy.get_include()])],
                                include_path=[{root!r}], quiet=True),
          script_args=["build_ext", "--inplace", "-q"])
""")


@pytest.mark.slow
def test_a_cython_module_cimports_and_drives_the_kernels(tmp_path: Path) -> None:
    (tmp_path / "consumer.pyx").write_text(CONSUMER)
    (tmp_path / "setup.py").write_text(SETUP.format(root=str(REPO_ROOT)))
    subprocess.run([sys.executable, "setup.py"], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    check = textwrap.dedent("""
        import sys
        sys.path.insert(0, ".")
        import consumer
        from cython_ext import spec as sp
        from cython_ext.features import FeatureSet
        from cython_ext.ring import RingBuffer
        print(*consumer.drive(FeatureSet([sp.Mean(), sp.Max()], 10), RingBuffer(5), 1000))
    """)
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, check=True, capture_output=True,
                            text=True, timeout=60)
    mean, top, oldest = (float(x) for x in result.stdout.split())
    assert mean == pytest.approx(np.mean(np.arange(990, 1000) % 10))
    assert top == 9.0 and oldest == 995.0
