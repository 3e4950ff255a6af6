"""Type stubs of the compiled GeoJSON fix points (cython_ext/geojson.pyx)."""

import numpy.typing as npt

def fix_points(lon_deg: npt.ArrayLike, lat_deg: npt.ArrayLike, time_us: npt.ArrayLike,
               speed_kmh: npt.ArrayLike, millis: bool = False) -> bytes: ...
