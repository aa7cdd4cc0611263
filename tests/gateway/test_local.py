"""The in-process local backend: a (tiny, untrained) transformers model behind the gateway, with
a per-account logits processor where generation-time watermarking plugs in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from distillguard.gateway import (
    Gateway,
    GatewayConfig,
    LocalUpstream,
    Router,
    create_app,
    issue_key,
)

from .support import ServerThread, free_port


class Recorder:
    """A logits processor that records which account it serves and bans one token."""

    def __init__(self, account_id: str, seen: list[str]) -> None:
        seen.append(account_id)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores[:, 5] = -float("inf")
        return scores


def test_local_backend_serves_json_and_streams_with_processors(tmp_path: Path) -> None:
    from distillguard.localmodel import LocalModelConfig, build_model, train_tokenizer

    tok = train_tokenizer(["the quick brown fox jumps over the lazy dog"] * 50 + ["hello world, how are you"] * 50, 300)
    model = build_model(LocalModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=128), len(tok))
    seen: list[str] = []
    router = Router()
    router.add("local", LocalUpstream(model, tok, processors=lambda acc: Recorder(acc, seen), max_new_tokens=8))
    gw = Gateway(GatewayConfig(db=f"sqlite:///{tmp_path / 'local.db'}", detect=False, capture_interval=0.02), router=router)
    key = issue_key(gw.store, "local-acc").key
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        url = f"http://127.0.0.1:{srv.server.config.port}"
        h = {"authorization": f"Bearer {key}"}
        r = httpx.post(url + "/v1/chat/completions", headers=h, timeout=60,
                       json={"model": "local", "max_tokens": 6, "messages": [{"role": "user", "content": "hello"}]})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["usage"]["completion_tokens"] == 6 and out["choices"][0]["finish_reason"] == "length"
        r = httpx.post(url + "/v1/messages", headers={"x-api-key": key}, timeout=60,
                       json={"model": "local", "max_tokens": 4, "stream": True, "messages": [{"role": "user", "content": "fox"}]})
        assert r.status_code == 200 and "event: message_stop" in r.text
        assert '"output_tokens":4' in r.text
    finally:
        srv.stop()
    assert seen == ["local-acc", "local-acc"]
    assert gw.watermark_key is None and router.resolve("local").watermarks_itself  # type: ignore[union-attr]
