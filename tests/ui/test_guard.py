"""The console's login and CSRF guard: no token in URLs, one-time links, Secure cookie, and a
cookie-borne action only from the console's own page with its CSRF value."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient

from distillguard.ui import COOKIE, ConsoleGuard, cookie_value, create_app, csrf_value

TOKEN = "console-token-0123456789"
HOST = "testserver"


def _guarded(case: tuple[Path, Path]) -> tuple[TestClient, ConsoleGuard]:
    guard = ConsoleGuard(create_app(*case, warm_campaigns=0, csrf=csrf_value(TOKEN)), TOKEN)
    return TestClient(guard, base_url=f"http://{HOST}"), guard


def _overrides(verdicts: Path) -> list[tuple[str, str]]:
    path = verdicts / "overrides.jsonl"
    if not path.exists():
        return []
    return [(x["account_id"], x["action"]) for x in map(json.loads, path.read_text().splitlines())]


def test_a_foreign_page_cannot_act_with_the_cookie(fresh_case: tuple[Path, Path]) -> None:
    client, guard = _guarded(fresh_case)
    client.cookies.set(COOKIE, cookie_value(TOKEN))
    url = "/accounts/user-003/action"
    # the probe from the review: text/plain, foreign Origin, no CSRF value
    r = client.post(url, content=b"action=block", headers={"content-type": "text/plain", "origin": "https://evil.example"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(url, data={"action": "block"}, headers={"origin": "https://evil.example"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(url, data={"action": "block"}, headers={"origin": f"http://{HOST}"}, follow_redirects=False)
    assert r.status_code == 403, "a same-origin form without the CSRF value is refused"
    r = client.post(url, data={"action": "block", "csrf": "0" * 64}, headers={"origin": f"http://{HOST}"}, follow_redirects=False)
    assert r.status_code == 403
    assert _overrides(fresh_case[1]) == []
    # the console's own form: same origin and its CSRF value
    page = client.get("/accounts/user-003")
    assert page.status_code == 200
    value = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert value is not None and value.group(1) == guard.csrf
    r = client.post(url, data={"action": "block", "csrf": value.group(1)}, headers={"origin": f"http://{HOST}"}, follow_redirects=False)
    assert r.status_code == 303
    assert _overrides(fresh_case[1]) == [("user-003", "block")]
    # a script with the bearer token needs no Origin nor CSRF value (no site can send that header)
    client.cookies.clear()
    r = client.post(url, data={"action": "unblock"}, headers={"authorization": f"Bearer {TOKEN}"}, follow_redirects=False)
    assert r.status_code == 303


def test_no_token_in_urls_and_one_time_links(fresh_case: tuple[Path, Path]) -> None:
    client, guard = _guarded(fresh_case)
    assert client.get("/").status_code == 401
    r = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 400 and COOKIE not in r.headers.get("set-cookie", "")
    link = guard.one_time_link()
    r = client.get(link, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert client.get(link, follow_redirects=False).status_code == 401, "a one-time link works once"
    # the login form posts the token in the body, from the console's own page only
    client.cookies.clear()
    assert client.post("/login", data={"token": TOKEN}, headers={"origin": "https://evil.example"}, follow_redirects=False).status_code == 401
    assert client.post("/login", data={"token": "wrong-token-0123456789"}, headers={"origin": f"http://{HOST}"}, follow_redirects=False).status_code == 401
    r = client.post("/login", data={"token": TOKEN}, headers={"origin": f"http://{HOST}"}, follow_redirects=False)
    assert r.status_code == 303 and COOKIE in r.headers["set-cookie"]


def test_an_oversized_form_is_refused_before_it_is_parsed(fresh_case: tuple[Path, Path]) -> None:
    from distillguard.ui._guard import MAX_FORM_BYTES

    client, guard = _guarded(fresh_case)
    client.cookies.set(COOKIE, cookie_value(TOKEN))
    padding = "x" * (MAX_FORM_BYTES + 1)
    r = client.post("/accounts/user-003/action",
                    data={"action": "block", "csrf": guard.csrf, "pad": padding},
                    headers={"origin": f"http://{HOST}"}, follow_redirects=False)
    assert r.status_code == 413 and "too large" in r.text
    assert _overrides(fresh_case[1]) == []
    # the same action within the cap goes through, its body handed on intact
    r = client.post("/accounts/user-003/action", data={"action": "block", "csrf": guard.csrf},
                    headers={"origin": f"http://{HOST}"}, follow_redirects=False)
    assert r.status_code == 303
    assert _overrides(fresh_case[1]) == [("user-003", "block")]
