"""The page a capability link opens in a browser: ``GET /l/{id}`` and its two files.

The page is static: the same bytes for every link.  Its script
(web/link.js) reads the key from the link's fragment, which browsers never
send, and decrypts in the browser with WebCrypto what the link store's API
gives the read key.  So the server learns nothing from a page view that it
does not learn from ``fusevault link get``.  A strict Content-Security-Policy
lets the page run only this server's own script and talk only to this
server: no inline script, no other origin, no frames, no forms.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fusevault.relay.limits import Refused

CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
FILES = {  # what /web/ serves, and as what
    "link.js": "text/javascript; charset=utf-8",
    "link.css": "text/css; charset=utf-8",
}


def asset(name: str) -> bytes:
    return resources.files("fusevault.relay").joinpath("web", name).read_bytes()


async def page(request: Request) -> Response:
    return Response(asset("link.html"), media_type="text/html; charset=utf-8", headers=HEADERS)


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in FILES:
        raise Refused(404, "no such file")
    return Response(asset(name), media_type=FILES[name], headers=HEADERS)


def routes(guarded) -> list[Route]:
    return [Route("/l/{id}", guarded(page), methods=["GET"]),
            Route("/web/{name}", guarded(static), methods=["GET"])]
