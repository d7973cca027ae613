"""The three HTML pages, each one self-contained file served with an ETag and a strict CSP.

A page is one request on a slow phone network: no scripts, styles or fonts to fetch after
it.  ``Cache-Control: no-cache`` with a strong ETag means a new release is seen at once, yet
a reload costs a 304 with no body.  gzip is applied by the app's middleware.

The Content-Security-Policy allows exactly the page's own inline script (by its SHA-256) and
connections to this server: an injected ``<script>`` (say, through an alert note) does not
run, and nothing the page shows can be sent elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

PAGES = {
    "phone": "static/phone.html",
    "wall": "static/wall.html",
    "dispatch": "static/dispatch.html",
}

_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Page:
    """One page's HTML and the headers it is served with."""

    html: str
    etag: str
    csp: str

    @classmethod
    def load(cls, name: str) -> Page:
        """Read ``static/{name}.html`` from the package and hash its inline scripts."""
        html = (
            resources.files("crowdwatch.dashboards")
            .joinpath(PAGES[name])
            .read_text(encoding="utf-8")
        )
        hashes = " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(m.encode("utf-8")).digest()).decode() + "'"
            for m in _SCRIPT.findall(html)
        )
        csp = (
            f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'"
        )
        etag = '"' + hashlib.sha256(html.encode("utf-8")).hexdigest()[:20] + '"'
        return cls(html, etag, csp)

    def respond(self, request: Request) -> Response:
        """200 with the page, or 304 when the client holds this version."""
        headers = {
            "Cache-Control": "no-cache",
            "ETag": self.etag,
            "Content-Security-Policy": self.csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Vary": "Accept-Encoding",
        }
        tags = [
            t.strip().removeprefix("W/")
            for t in request.headers.get("if-none-match", "").split(",")
        ]
        if self.etag in tags:
            return Response(status_code=304, headers=headers)
        return HTMLResponse(self.html, headers=headers)
