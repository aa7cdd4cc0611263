"""The gateway: an OpenAI- and Anthropic-compatible proxy with accounts, keys, limits,
enforcement and capture. `create_app` gives the ASGI app; `serve` runs it with uvicorn."""

from distillguard.gateway._app import create_app
from distillguard.gateway._batches import BatchService
from distillguard.gateway._batchroutes import batch_router
from distillguard.gateway._batchstore import BatchStore
from distillguard.gateway._capture import Capture
from distillguard.gateway._config import DEFAULT_DB, GatewayConfig, split_spec
from distillguard.gateway._detector import DetectorService, Leadership, run_detector
from distillguard.gateway._export import ExportResult, export_log
from distillguard.gateway._gateway import Gateway, build_router
from distillguard.gateway._keys import IssuedKey, KeyRing, hash_key, issue_key
from distillguard.gateway._local import LocalUpstream
from distillguard.gateway._metrics import DetectorMetrics, GatewayMetrics
from distillguard.gateway._mock import mock_upstream_app, run_mock_upstream
from distillguard.gateway._online import OnlineLoop, events_table
from distillguard.gateway._protocol import ApiError, ChatRequest, Delta, Message, Reply
from distillguard.gateway._serve import serve
from distillguard.gateway._spool import Spool, SpoolFull
from distillguard.gateway._store import Store
from distillguard.gateway._upstream import (
    AnthropicUpstream,
    FakeUpstream,
    OpenAIUpstream,
    Router,
    Upstream,
)
from distillguard.gateway._verdicts import VerdictFollower, VerdictTables

__all__ = [
    "DEFAULT_DB",
    "AnthropicUpstream",
    "ApiError",
    "BatchService",
    "BatchStore",
    "Capture",
    "ChatRequest",
    "Delta",
    "DetectorMetrics",
    "DetectorService",
    "ExportResult",
    "FakeUpstream",
    "Gateway",
    "GatewayConfig",
    "GatewayMetrics",
    "IssuedKey",
    "KeyRing",
    "Leadership",
    "LocalUpstream",
    "Message",
    "OnlineLoop",
    "OpenAIUpstream",
    "Reply",
    "Router",
    "Spool",
    "SpoolFull",
    "Store",
    "Upstream",
    "VerdictFollower",
    "VerdictTables",
    "batch_router",
    "build_router",
    "create_app",
    "events_table",
    "export_log",
    "hash_key",
    "issue_key",
    "mock_upstream_app",
    "run_detector",
    "run_mock_upstream",
    "serve",
    "split_spec",
]
