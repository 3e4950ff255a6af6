"""The wheel's compiled extensions on the target: loaded from the installed wheel, built for this
machine's Python, and computing what their oracles compute.

`deploy/gateway/gateway.sh build ARCH` runs this in the target root (under qemu-user for a foreign
one) with lienwatch installed from the wheelhouse just made, so a cross-compiled extension that
does not load, or loads and computes wrong (ABI, float flags), fails the build. Exit 1 and one line
per failure; the last line is JSON.
"""

from __future__ import annotations

import importlib
import json
import math
import platform
import sys
import sysconfig

EXTENSIONS = ("cython_ext.canframe", "cython_ext.features", "cython_ext.geo", "cython_ext.ring",
              "protocol._fixblock")


def check() -> list[str]:
    failures: list[str] = []
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for name in EXTENSIONS:
        module = importlib.import_module(name)
        if not str(module.__file__).endswith(suffix):
            failures.append(f"{name} is {module.__file__}, not a compiled {suffix}")

    # cbor2 (a Rust extension; built by gateway.sh from its sdist where PyPI has no wheel) is the
    # one compiled for this machine, and the hardened decoder still refuses what it must.
    import cbor2._cbor2

    from protocol import cbor
    from protocol.errors import MalformedMessageError

    if not str(cbor2._cbor2.__file__).endswith(suffix):
        failures.append(f"cbor2 is {cbor2._cbor2.__file__}, not a compiled {suffix}")
    if cbor.loads(cbor.dumps({1: [2.5, "x", b"y"]})) != {1: [2.5, "x", b"y"]}:
        failures.append("cbor2 does not round-trip a plain map")
    for hostile, what in ((b"\xc1\x00", "a tag"), (b"\x9f\x01\xff", "an indefinite array"),
                          (b"\xa2\x01\x01\x01\x02", "a duplicate key"), (b"\x01\x02", "trailing bytes")):
        try:
            cbor.loads(hostile)
            failures.append(f"the CBOR decoder accepted {what}")
        except MalformedMessageError:
            pass

    # The fix-block kernel decodes the committed telemetry vector as its numpy oracle does.
    import protocol
    from protocol import golden, telemetry_codec

    vector = (golden.VECTOR_DIR / "telemetry.cbor").read_bytes()
    if not telemetry_codec.COMPILED:
        failures.append("protocol._fixblock is not used by the telemetry codec")
    compiled = protocol.decode(vector)
    telemetry_codec.ACCELERATED = False
    try:
        oracle = protocol.decode(vector)
    finally:
        telemetry_codec.ACCELERATED = True
    if compiled != oracle:
        failures.append("the compiled fix-block decoder disagrees with the numpy oracle")

    # Distances, ring statistics and CAN frames against the pure-Python twins and python-can.
    import can

    from cython_ext import geo, reference, ring
    from cython_ext.canframe import FrameBatch

    got, want = geo.distance_m(47.37, 8.54, 46.95, 7.44), reference.haversine_m(47.37, 8.54, 46.95, 7.44)
    if not math.isclose(got, want, rel_tol=1e-12):
        failures.append(f"geo.distance_m {got!r} != reference {want!r}")
    fast, slow = ring.RingBuffer(8), reference.RingBuffer(8)
    for i in range(20):
        fast.push(i * 1_000_000, float(i * i) / 7.0)
        slow.push(i * 1_000_000, float(i * i) / 7.0)
    window, oracle_window = (fast.times_ns().tolist(), fast.values().tolist()), \
        (slow.times_ns().tolist(), slow.values().tolist())
    if window != oracle_window:
        failures.append(f"ring window {window} != reference {oracle_window}")
    batch = FrameBatch(4)
    message = can.Message(arbitration_id=0x18FEF100, is_extended_id=True, data=bytes(range(8)), timestamp=1.5)
    batch.append_message(message)
    back = batch.messages()[0]
    if (back.arbitration_id, back.is_extended_id, bytes(back.data), back.timestamp) != \
            (0x18FEF100, True, bytes(range(8)), 1.5):
        failures.append(f"canframe round trip gave {back!r}")
    return failures


def main() -> int:
    failures = check()
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print(json.dumps({"machine": platform.machine(), "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
                      "extensions": len(EXTENSIONS), "ok": not failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
