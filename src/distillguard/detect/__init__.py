"""Detection: scan a traffic log and say which accounts (and campaigns) are distilling.

`scan` runs a registered detector and writes `verdicts` and `campaigns`; `volume` and
`random` are the reference baselines every real detector is compared with.
"""

from typing import TYPE_CHECKING

from distillguard.detect._config import DetectConfig, load_config
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

if TYPE_CHECKING:
    from distillguard.detect._endusers import EndUserDetector
    from distillguard.detect._firstrequest import CampaignKeys, RequestKeys, request_keys
    from distillguard.detect._online import OnlineDetector


def __getattr__(name: str) -> object:
    # The online detector pulls in polars and scipy; load it only when asked for.
    if name == "OnlineDetector":
        from distillguard.detect._online import OnlineDetector

        return OnlineDetector
    if name == "EndUserDetector":
        from distillguard.detect._endusers import EndUserDetector

        return EndUserDetector
    if name == "CampaignKeys":
        from distillguard.detect._firstrequest import CampaignKeys

        return CampaignKeys
    if name == "RequestKeys":
        from distillguard.detect._firstrequest import RequestKeys

        return RequestKeys
    if name == "request_keys":
        from distillguard.detect._firstrequest import request_keys

        return request_keys
    raise AttributeError(f"module 'distillguard.detect' has no attribute {name!r}")

__all__ = [
    "CampaignKeys",
    "DEFAULT_DETECTOR",
    "DetectConfig",
    "EndUserDetector",
    "OnlineDetector",
    "load_config",
    "ENGINES",
    "DetectorFn",
    "Engine",
    "ScanResult",
    "detector_names",
    "get_detector",
    "register_detector",
    "RequestKeys",
    "request_keys",
    "scan",
]
