"""Who may use the console, and that a browser's actions come from the console itself.

`ConsoleGuard` wraps the console's ASGI app (the gateway's `/console` and `distillguard ui`):

- Every path needs the token: `Authorization: Bearer TOKEN` (scripts), or the session cookie
  a browser gets by posting the token to `login` (a form) or by opening a one-time link
  (`one_time_link`: single use, minutes long; the token itself never goes in a URL).
- The cookie holds an HMAC of the token, not the token; it is HttpOnly, Secure (browsers keep
  Secure cookies for http://localhost too) and SameSite=Strict.
- A cookie-borne POST (an action) must come from the console's own origin (`Origin`, else
  `Referer`), be a form, and carry the CSRF value the console's forms hold (`csrf_value`).
  A bearer-token request cannot be forged by another site and needs none of this.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import time
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from distillguard._asgi import read_capped, replay

COOKIE = "dg_console"
#: seconds a one-time login link stays valid
LINK_TTL_S = 300.0
#: most one-time links outstanding (older ones are forgotten first)
MAX_LINKS = 100
#: largest form body read from a login or an action (the console's forms are a few fields)
MAX_FORM_BYTES = 16 * 1024
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")


def cookie_value(token: str) -> str:
    """What the login cookie holds: an HMAC of the token (the token itself never is)."""
    return hmac.new(token.encode(), b"distillguard-console-cookie-v1", hashlib.sha256).hexdigest()


def csrf_value(token: str) -> str:
    """The value the console's forms carry and its POSTs must send back."""
    return hmac.new(token.encode(), b"distillguard-console-csrf-v1", hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def _header(scope: Any, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return str(v.decode("latin-1"))
    return None


async def _read_form(receive: Any) -> tuple[bytes, dict[str, str]] | None:
    """(raw body, fields) of a form of at most MAX_FORM_BYTES; None if larger."""
    raw = await read_capped(receive, MAX_FORM_BYTES)
    if raw is None:
        return None
    fields = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
    return raw, fields


async def _answer(send: Any, status: int, body: str, ctype: bytes = b"text/plain; charset=utf-8",
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = body.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(data)).encode()),
                            (b"cache-control", b"no-store"), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class ConsoleGuard:
    """The console's authentication and CSRF checks, as an ASGI wrapper (see the module)."""

    def __init__(self, app: Any, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the console token must be at least 16 characters long")
        self.app = app
        self.token = token
        self.csrf = csrf_value(token)
        self._cookie = cookie_value(token)
        self._links: dict[str, float] = {}

    def one_time_link(self, root: str = "") -> str:
        """A path that logs a browser in once (`ROOT/?login=CODE`), valid for LINK_TTL_S."""
        now = time.monotonic()
        for code in [c for c, until in self._links.items() if until < now]:
            del self._links[code]
        while len(self._links) >= MAX_LINKS:
            self._links.pop(next(iter(self._links)))
        code = secrets.token_urlsafe(24)
        self._links[code] = now + LINK_TTL_S
        return f"{root.rstrip('/')}/?login={code}"

    def _authorised(self, scope: Any) -> str | None:
        """How the request is authorised: "bearer", "cookie", or None."""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and _same(given.strip(), self.token):
                    return "bearer"
            elif name == b"cookie":
                try:
                    jar: SimpleCookie = SimpleCookie(value.decode("latin-1"))
                except CookieError:
                    continue
                morsel = jar.get(COOKIE)
                if morsel is not None and _same(morsel.value, self._cookie):
                    return "cookie"
        return None

    def _same_origin(self, scope: Any) -> bool:
        """Whether the request's Origin (or, without one, Referer) is the console's own host."""
        host = _header(scope, b"host")
        origin = _header(scope, b"origin") or _header(scope, b"referer")
        if not host or not origin or origin == "null":
            return False
        return urlsplit(origin).netloc.lower() == host.lower()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        root = str(scope.get("root_path", "")).rstrip("/")
        path = scope["path"]
        path = path[len(root):] if root and path.startswith(root) else path
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        method = scope["method"]
        if "token" in query:
            await _answer(send, 400, "The token does not go in a URL (addresses end up in logs and history); "
                                     f"log in at {root}/login, or use a one-time link.")
            return
        if "login" in query:
            until = self._links.pop(query["login"][0], None)
            if until is None or until < time.monotonic():
                await _answer(send, 401, f"This login link is used or expired; get a new one, or log in at {root}/login.")
                return
            await self._logged_in(send, root)
            return
        if path == "/login":
            await self._login(scope, receive, send, root)
            return
        how = self._authorised(scope)
        if how is None:
            await _answer(send, 401, f"Log in at {root}/login, or send 'Authorization: Bearer TOKEN'.",
                          headers=[(b"www-authenticate", b"Bearer")])
            return
        if how == "cookie" and method in _UNSAFE:
            if not self._same_origin(scope):
                await _answer(send, 403, "This action did not come from the console's own pages (Origin check).")
                return
            ctype = (_header(scope, b"content-type") or "").encode().split(b";")[0].strip().lower()
            if ctype not in _FORMS:
                await _answer(send, 415, "Console actions are HTML form posts.")
                return
            form = await _read_form(receive)
            if form is None:
                await _answer(send, 413, "The form is too large.")
                return
            raw, fields = form
            if not _same(fields.get("csrf", ""), self.csrf):
                await _answer(send, 403, "This action's form is missing the console's CSRF value; reload the page and retry.")
                return
            receive = replay(raw, receive)
        await self.app(scope, receive, send)

    async def _logged_in(self, send: Any, root: str) -> None:
        cookie = f"{COOKIE}={self._cookie}; Path={root or '/'}; HttpOnly; Secure; SameSite=Strict"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", (root + "/").encode()), (b"set-cookie", cookie.encode()),
                                (b"cache-control", b"no-store"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def _login(self, scope: Any, receive: Any, send: Any, root: str) -> None:
        if scope["method"] == "POST":
            form = await _read_form(receive) if self._same_origin(scope) else None
            if form is not None and _same(form[1].get("token", ""), self.token):
                await self._logged_in(send, root)
                return
            await _answer(send, 401, _login_page(root, "Wrong token, or the form did not come from this page."), b"text/html; charset=utf-8")
            return
        await _answer(send, 200, _login_page(root, ""), b"text/html; charset=utf-8")


def _login_page(root: str, error: str) -> str:
    err = f"<p role=alert>{html.escape(error)}</p>" if error else ""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>distillguard console: log in</title></head>"
            f"<body><h1>Log in to the console</h1>{err}<form method=post action=\"{html.escape(root)}/login\">"
            "<label>Token <input type=password name=token autocomplete=current-password required></label> "
            "<button type=submit>Log in</button></form></body></html>")
