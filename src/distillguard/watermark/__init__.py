"""Watermarks for what the API returns, and their detection with exact p-values.

- `WatermarkKey`: the provider's versioned secret (`WatermarkKey.generate()`, `.save`,
  `.load`, `.rotate`); no default key exists.
- Generation time: `key.logits_processor(account_id)`, a transformers LogitsProcessor
  (green list "kgw" or distortion-free "gumbel", plus a per-account code layer).
- Post hoc: `key.text_watermarker(account_id)` with `.apply(text)` and
  `.stream().feed(delta)` / `.finish()` (keyed synonym choice).
- Detection: `detect_ids`, `WatermarkDetector.detect_texts`, `detect_lexical`, each a
  `Detection` with the p-value, tuples scored, controls and matching accounts.
"""

from distillguard.watermark._config import WatermarkConfig
from distillguard.watermark._detect import (
    AccountMatch,
    Detection,
    ScoredTuples,
    WatermarkDetector,
    collect_tuples,
    detect_ids,
    detect_tuples,
)
from distillguard.watermark._keys import KeyVersion, WatermarkKey
from distillguard.watermark._lexical import TextStream, TextWatermarker, detect_lexical
from distillguard.watermark._processor import WatermarkLogitsProcessor
from distillguard.watermark._synonyms import PAIRS as SYNONYM_PAIRS

__all__ = [
    "SYNONYM_PAIRS",
    "AccountMatch",
    "Detection",
    "KeyVersion",
    "TextStream",
    "TextWatermarker",
    "WatermarkConfig",
    "WatermarkDetector",
    "WatermarkKey",
    "ScoredTuples",
    "WatermarkLogitsProcessor",
    "collect_tuples",
    "detect_ids",
    "detect_tuples",
    "detect_lexical",
]
