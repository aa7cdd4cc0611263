"""The analyst console mounted in the gateway, over its own capture and live detector."""

from __future__ import annotations

import time

import httpx

from distillguard.gateway._console import LiveConsole
from distillguard.ui import COOKIE

from .support import ADMIN, Running

AUTH = {"authorization": f"Bearer {ADMIN}"}


def _ready(client: httpx.Client, path: str = "/console/", **kw: object) -> httpx.Response:
    """The page once the first snapshot exists (until then: 503 and a self-refreshing page)."""
    deadline = time.monotonic() + 60
    while True:
        r = client.get(path, **kw)  # type: ignore[arg-type]
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        assert "Preparing the console" in r.text and r.headers["retry-after"]
        time.sleep(0.2)


def test_console_is_behind_the_admin_token_and_shows_the_capture(running: Running) -> None:
    with httpx.Client(base_url=running.url, timeout=30) as client:
        r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {running.key}"},
                        json={"model": "fake-1", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        running.events()  # let capture write it
        assert client.get("/console/").status_code == 401
        assert client.get("/console/", headers={"authorization": "Bearer wrong"}).status_code == 401
        page = _ready(client, headers=AUTH)
        assert page.status_code == 200 and "<html" in page.text.lower()
        # The token never goes in an address; a browser logs in with a one-time link from the
        # admin API; the cookie carries the login after, and what it holds is not the token.
        assert client.get(f"/console/?token={ADMIN}", follow_redirects=False).status_code == 400
        link = client.post("/admin/console-link", headers=AUTH).json()["url"]
        assert link.startswith("/console/?login=")
        login = client.get(link, follow_redirects=False)
        assert login.status_code == 303 and COOKIE in login.headers["set-cookie"]
        assert ADMIN not in login.headers["set-cookie"] and "HttpOnly" in login.headers["set-cookie"]
        assert "Secure" in login.headers["set-cookie"] and "Path=/console" in login.headers["set-cookie"]
        assert client.get(link, follow_redirects=False).status_code == 401
        client.cookies.set(COOKIE, login.cookies[COOKIE])
        assert client.get("/console/").status_code == 200
        client.cookies.clear()
        client.cookies.set(COOKIE, ADMIN)  # the token itself is not a valid cookie
        assert client.get("/console/").status_code == 401
        client.cookies.clear()


def test_every_console_route_needs_the_token(running: Running) -> None:
    console: LiveConsole = running.gateway_app.state.console  # type: ignore[attr-defined]
    with httpx.Client(base_url=running.url, timeout=30) as client:
        assert _ready(client, headers=AUTH).status_code == 200
        app = console._app
        paths = {(m, getattr(r, "path", "")) for r in app.routes for m in getattr(r, "methods", None) or {"GET"}}
        assert ("POST", "/accounts/{account_id}/action") in paths and ("GET", "/campaigns/{campaign_id}/stix.json") in paths
        for method, path in sorted(paths):
            url = "/console" + path.replace("{account_id}", "acme").replace("{campaign_id}", "C001").replace("{path}", "x")
            for headers in ({}, {"authorization": "Bearer nope"}, {"cookie": f"{COOKIE}=nope"}, {"cookie": "%%%bad"}):
                r = client.request(method, url, headers=headers, data={"action": "block"} if method == "POST" else None)
                assert r.status_code == 401, (method, url, headers, r.status_code)


def test_snapshot_is_rebuilt_in_the_background_and_actions_reach_the_gateway(running: Running) -> None:
    gw = running.gateway
    console: LiveConsole = running.gateway_app.state.console  # type: ignore[attr-defined]
    with httpx.Client(base_url=running.url, timeout=30) as client:
        assert _ready(client, headers=AUTH).status_code == 200
        builds, old = console.builds, console._app
        key = running.new_key("console-acc")
        client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                    json={"model": "fake-1", "messages": [{"role": "user", "content": "from a new account"}]})
        running.events()
        console.max_age = 0.0  # stale: the next visit is answered from the old snapshot at once
        t0 = time.perf_counter()
        assert client.get("/console/", headers=AUTH).status_code == 200
        assert time.perf_counter() - t0 < 1.0
        deadline = time.monotonic() + 60
        while console.builds == builds and time.monotonic() < deadline:
            time.sleep(0.05)
        console.max_age = 3600.0
        assert console.builds == builds + 1 and console._app is not old and console.last_error is None
        # the new snapshot has the new account (its events were appended as a new part)
        page = client.get("/console/accounts/console-acc", headers=AUTH)
        assert page.status_code == 200 and "console-acc" in page.text
        act = client.post("/console/accounts/console-acc/action", headers=AUTH, data={"action": "block", "by": "ana"},
                          follow_redirects=False)
        assert act.status_code == 303
        assert gw.policy.decide("console-acc").blocked
        blocked = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                              json={"model": "fake-1", "messages": [{"role": "user", "content": "again"}]})
        assert blocked.status_code == 403
