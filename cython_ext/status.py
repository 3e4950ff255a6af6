"""What `push` did with one sample: the documented ordering and NaN rule, as return codes."""

from __future__ import annotations

from enum import IntEnum


class PushStatus(IntEnum):
    """Return code of every `push`; the compiled paths return the same plain ints."""

    #: Stored and counted in every feature.
    ACCEPTED = 0
    #: Timestamp older than the newest accepted one: rejected and counted in `late`.
    LATE = 1
    #: NaN or ±inf value (or coordinate): skipped and counted in `nonfinite`.
    NONFINITE = 2
    #: Latitude outside ±90° or longitude outside ±180°: skipped and counted in `out_of_range`.
    OUT_OF_RANGE = 3


#: Radius of the mean Earth sphere (IUGG), used by every haversine distance in lienwatch.
EARTH_RADIUS_M = 6_371_008.8
