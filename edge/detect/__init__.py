"""Detectors: bounded-state observers of the vehicle's signals that report `Finding`s.

This package holds the seam only (`Detector`, `Finding`, `Observation`, the registry); the
detectors themselves (tow, unplug, jamming, odometer rollback, …) register here by name.
"""

from edge.detect.base import Detector, Finding, Observation
from edge.detect.registry import (
    DetectorContext,
    DetectorSpec,
    build_detector,
    detector_kinds,
    register_detector,
)

__all__ = [
    "Detector", "DetectorContext", "DetectorSpec", "Finding", "Observation", "build_detector",
    "detector_kinds", "register_detector",
]
