"""The node's noise: draws what ``genogate.privacy`` plans, with OpenDP's exact discrete samplers.

Planning (sensitivities, ``NoisePlan``, privacy maps, half-widths) is shared with the coordinator and lives
in ``genogate.privacy``; this module only draws. ``OpenDPNoise`` invokes exactly the measurement
``genogate.privacy.measurement`` builds for a plan, the one whose privacy map ``plan`` checked against the
charge. Stateless and thread-safe; OpenDP releases the GIL while sampling.

There is deliberately no way to switch noise off: tests of other modules inject their own ``Noise``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from genogate.privacy import NoisePlan, Sensitivity, measurement


class Noise(Protocol):
    """What the service draws noise with. Production: ``OpenDPNoise``; unit tests may inject their own."""

    def draw(self, exact: npt.NDArray[np.int64], p: NoisePlan, sens: Sensitivity) -> npt.NDArray[np.int64]:
        """``exact`` plus independent noise per value, as planned; same length, int64."""
        ...


class OpenDPNoise:
    """Production noise: invokes ``measurement(p, sens)`` (OpenDP's exact discrete samplers) on the exact
    vector. Stateless and thread-safe; OpenDP releases the GIL while sampling."""

    def draw(self, exact: npt.NDArray[np.int64], p: NoisePlan, sens: Sensitivity) -> npt.NDArray[np.int64]:
        if exact.ndim != 1 or exact.shape[0] != sens.length:
            # OpenDP does not check a sized domain on invocation; a wrong shape means a wrong sensitivity.
            raise ValueError(f"expected {sens.length} values, got shape {exact.shape}")
        noisy = measurement(p, sens)(exact.astype(np.int64).tolist())
        return np.asarray(noisy, dtype=np.int64)
