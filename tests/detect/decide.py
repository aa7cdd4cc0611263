"""Run the online detector over hand-built scenes and read its verdicts, for the cell tests."""

from __future__ import annotations

import json
from typing import Any

from distillguard.detect import OnlineDetector
from distillguard.detect._communities import refine_campaigns
from distillguard.detect._config import DetectConfig, load_config
from distillguard.detect._output import verdict_table

from .builders import account_table, event_table

Scene = tuple[list[dict[str, object]], list[dict[str, object]]]


def cells_config(**update: Any) -> DetectConfig:
    """The shipped config with some `[cells]` settings changed."""
    base = load_config()
    return base.model_copy(update={"cells": base.cells.model_copy(update=update)})


def decide(*parts: Scene, cfg: DetectConfig | None = None,
           ) -> tuple[OnlineDetector, dict[str, str], dict[str, list[str]]]:
    """The detector after all the scenes' events as one batch; actions and reasons by account."""
    cfg = cfg or load_config()
    det = OnlineDetector(cfg, accounts=account_table([a for p in parts for a in p[1]]))
    det.update(event_table([r for p in parts for r in p[0]]))
    a = refine_campaigns(det.assess(), cfg.links.min_accounts)
    v = verdict_table(det.state, a, cfg, None).to_pylist()
    return det, {r["account_id"]: r["action"] for r in v}, {
        r["account_id"]: json.loads(r["reasons"]) for r in v}
