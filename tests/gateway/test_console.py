"""The analyst console mounted in the gateway, over its own capture and live detector."""

from __future__ import annotations

import httpx

from .support import ADMIN, Running


def test_console_is_behind_the_admin_token_and_shows_the_capture(running: Running) -> None:
    with httpx.Client(base_url=running.url, timeout=30) as client:
        r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {running.key}"},
                        json={"model": "fake-1", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        running.events()  # let capture write it
        assert client.get("/console/").status_code == 401
        assert client.get("/console/", headers={"authorization": "Bearer wrong"}).status_code == 401
        page = client.get("/console/", headers={"authorization": f"Bearer {ADMIN}"})
        assert page.status_code == 200 and "<html" in page.text.lower()
        # A browser logs in once with the token in the address; the cookie carries it after.
        login = client.get(f"/console/?token={ADMIN}", follow_redirects=False)
        assert login.status_code == 303 and "dg_console" in login.headers["set-cookie"]
        again = client.get("/console/", cookies={"dg_console": ADMIN})
        assert again.status_code == 200
