"""Post-hoc watermarking of a non-local upstream, per account, identical streamed and not."""

from __future__ import annotations

from pathlib import Path

import httpx

from distillguard.gateway import FakeUpstream, Gateway, GatewayConfig, Router, create_app, issue_key

from .support import ServerThread, free_port

PROMPT = "please explain in simple words how the big old house was built and why people liked the quick answer"


def test_outputs_are_watermarked_per_account(tmp_path: Path) -> None:
    from distillguard.watermark import WatermarkKey

    # A short answer offers few synonym slots; take a key that changes it for acc-1, so the
    # test can tell a watermarked answer from a plain one (a random key may keep every word).
    plain = f"You asked: {PROMPT}"
    key = next(k for k in (WatermarkKey.generate() for _ in range(50))
               if k.text_watermarker("acc-1").apply(plain) != plain)
    key_file = key.save(tmp_path / "wm.key")
    cfg = GatewayConfig(db=f"sqlite:///{tmp_path / 'wm.db'}", watermark_key_file=key_file, detect=False, capture_interval=0.02)
    router = Router()
    router.add("*", FakeUpstream())
    gw = Gateway(cfg, router=router)
    k1, k2 = issue_key(gw.store, "acc-1").key, issue_key(gw.store, "acc-2").key
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        url = f"http://127.0.0.1:{srv.server.config.port}/v1/chat/completions"
        body = {"model": "m", "max_tokens": 200, "messages": [{"role": "user", "content": PROMPT}]}

        def ask(k: str, stream: bool) -> str:
            r = httpx.post(url, json={**body, "stream": stream}, headers={"authorization": f"Bearer {k}"}, timeout=30)
            assert r.status_code == 200, r.text
            if not stream:
                return str(r.json()["choices"][0]["message"]["content"])
            import json

            chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
            return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])

        one = ask(k1, False)
        assert one == key.text_watermarker("acc-1").apply(plain) and one != plain
        assert ask(k1, True).strip() == one.strip()
        assert ask(k2, False) == key.text_watermarker("acc-2").apply(plain)
    finally:
        srv.stop()
    logged = {e["account_id"]: e["response"] for rows in gw.store.iter_events() for e in rows}
    assert logged["acc-1"].strip() == one.strip()
