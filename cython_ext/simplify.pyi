"""Type stubs of the compiled Douglas-Peucker significance (cython_ext/simplify.pyx)."""

import numpy as np
import numpy.typing as npt

def significance(lat_deg: npt.ArrayLike, lon_deg: npt.ArrayLike, forced: npt.ArrayLike | None = None, *,
                 floor_m: float = 0.0, cut_every: int = 256) -> npt.NDArray[np.float64]: ...
def checked(lat_deg: npt.ArrayLike, lon_deg: npt.ArrayLike, forced: npt.ArrayLike | None = None, *,
            floor_m: float = 0.0, cut_every: int = 256
            ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]: ...
