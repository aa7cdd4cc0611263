"""Detection: scan a traffic log and say which accounts (and campaigns) are distilling.

`scan` runs a registered detector and writes `verdicts` and `campaigns`; `volume` and
`random` are the reference baselines every real detector is compared with.
"""

from distillguard.detect._registry import (
    DEFAULT_DETECTOR,
    ENGINES,
    DetectorFn,
    Engine,
    ScanResult,
    detector_names,
    get_detector,
    register_detector,
)
from distillguard.detect._scan import scan

__all__ = [
    "DEFAULT_DETECTOR",
    "ENGINES",
    "DetectorFn",
    "Engine",
    "ScanResult",
    "detector_names",
    "get_detector",
    "register_detector",
    "scan",
]
