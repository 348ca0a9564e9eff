"""Safe-by-default HTTP policy for the server: bind address, Host/Origin checks, token, body sizes.

``security_middlewares(policy)`` returns aiohttp middlewares meant to be the outermost ones
of the application (before any error-handling middleware):

1. Host check against DNS rebinding: on a loopback bind, ``Host`` must name a loopback host
   with the bound port; on a specific address, that address or a loopback name; on a
   wildcard bind (``0.0.0.0``, ``::``) anything (the token protects it then).
2. Origin check against CSRF and cross-site websockets: an ``Origin`` header, when present,
   must be ``http(s)://<Host>``; ``Origin: null`` and ``Sec-Fetch-Site: cross-site`` are refused.
3. Token: with ``auth_token`` set, every request (websocket included) needs
   ``Authorization: Bearer <token>``, ``?token=<token>``, or the HttpOnly SameSite=Strict
   cookie that opening the canvas at ``/?token=<token>`` sets for the page's own files.
4. Body size: multipart bodies are limited to ``max_upload_bytes``, any other body to
   ``max_json_bytes``, by Content-Length up front and, for chunked bodies, while reading
   (aiohttp's ``client_max_size``), always answered with a JSON 413.

The middlewares read the policy object at request time, so a server that binds port 0 can
set ``policy.port`` once it knows the port.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from engine.graph import error_entry

MiB = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


@dataclass
class SecurityPolicy:
    """Where the server listens and what it lets in."""

    host: str = "127.0.0.1"
    port: int = 8188
    auth_token: str | None = None
    max_json_bytes: int = 16 * MiB
    max_upload_bytes: int = 256 * MiB


POLICY_REQUEST_KEY = web.RequestKey("kinema_security_policy", SecurityPolicy)
"""Key under which the middlewares store the policy on each request (``request[KEY]``)."""


def json_error(status: int, type_: str, message: str, details: str = "",
               extra_info: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    """A response in Kinema's structured error shape ``{"error": {type, message, ...}}``."""
    body = {"error": error_entry(type_, message, details, **(extra_info or {}))}
    return web.json_response(body, status=status, headers=headers)


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (bracketed or not, IPv4-mapped too) and ``localhost``."""
    name = _strip_brackets(host.strip()).rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_wildcard(host: str) -> bool:
    """True when ``host`` means "every interface"."""
    return _strip_brackets(host.strip()) in _WILDCARDS


def startup_warning(policy: SecurityPolicy) -> str | None:
    """A warning to print when the server is reachable beyond this machine without a token."""
    if is_loopback(policy.host) or policy.auth_token:
        return None
    where = "every interface" if is_wildcard(policy.host) else policy.host
    return (f"WARNING: Kinema is listening on {where} (port {policy.port}) without an auth "
            "token: anyone who can reach this address can run workflows and read or write "
            "its files. Set a token (--auth-token) or bind to 127.0.0.1.")


def client_max_size(policy: SecurityPolicy) -> int:
    """The ``client_max_size`` for ``web.Application``: the limit of a non-multipart body.

    Multipart requests get ``max_upload_bytes`` instead (the body middleware raises the limit
    for them), so ``request.post()`` uploads work up to the upload limit.
    """
    return policy.max_json_bytes


def split_host_header(value: str) -> tuple[str, int | None] | None:
    """``Host`` header → (lower-case host without brackets, port or None); None if malformed."""
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    elif value.count(":") > 1:
        return None  # an IPv6 address must be bracketed in a Host header
    else:
        host, _, port_text = value.partition(":")
        port_text = port_text if ":" in value else None
    if not host:
        return None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)


def host_allowed(policy: SecurityPolicy, host_header: str | None) -> bool:
    """Whether a request with this ``Host`` header may reach a server bound as in ``policy``."""
    if is_wildcard(policy.host):
        return True
    parsed = split_host_header(host_header or "")
    if parsed is None:
        return False
    name, port = parsed
    if is_loopback(policy.host):
        return is_loopback(name) and (port if port is not None else 80) == policy.port
    bound = _strip_brackets(policy.host.strip()).lower()
    return name == bound or is_loopback(name)


def origin_allowed(origin: str | None, host_header: str | None) -> bool:
    """No Origin (scripts) is fine; otherwise it must be ``http(s)://<Host>`` exactly."""
    if origin is None:
        return True
    origin = origin.strip().lower()
    host = (host_header or "").strip().lower()
    if not host or origin == "null":
        return False
    return origin in (f"http://{host}", f"https://{host}")


TOKEN_COOKIE = "kinema_token"


def given_token(request: web.Request) -> tuple[str | None, str]:
    """The token a request carries, and where: header, query or cookie."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), "header"
    if "token" in request.query:
        return request.query["token"], "query"
    if TOKEN_COOKIE in request.cookies:
        return request.cookies[TOKEN_COOKIE], "cookie"
    return None, ""


def token_ok(policy: SecurityPolicy, request: web.Request) -> bool:
    """Whether the request carries the policy's token (header, query parameter or cookie)."""
    given, _ = given_token(request)
    expected = (policy.auth_token or "").encode()
    return given is not None and hmac.compare_digest(given.encode(), expected)


def too_large(limit: int, what: str = "request body") -> web.Response:
    """The JSON 413 every size limit answers with."""
    return json_error(413, "payload_too_large", f"The {what} is larger than {limit} bytes.",
                      f"limit {limit} bytes", {"limit": limit})


def _is_multipart(request: web.Request) -> bool:
    return request.content_type.startswith("multipart/")


def body_limit(policy: SecurityPolicy, request: web.Request) -> int:
    """The byte limit that applies to this request's body."""
    return policy.max_upload_bytes if _is_multipart(request) else policy.max_json_bytes


def security_middlewares(policy: SecurityPolicy) -> list[Any]:
    """Host, Origin, token and body-size middlewares, outermost first."""

    @web.middleware
    async def host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[POLICY_REQUEST_KEY] = policy
        host = request.headers.get("Host")
        if not host_allowed(policy, host):
            return json_error(403, "forbidden_host", "Host header not allowed.",
                              f"Host {host!r} does not name this server "
                              f"({policy.host}:{policy.port}); refusing (DNS rebinding guard).",
                              {"host": host})
        return await handler(request)

    @web.middleware
    async def origin_check(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, request.headers.get("Host")):
            return json_error(403, "forbidden_origin", "Cross-origin request refused.",
                              f"Origin {origin!r} does not match this server's Host.",
                              {"origin": origin})
        if request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site":
            return json_error(403, "forbidden_origin", "Cross-site request refused.",
                              "Sec-Fetch-Site: cross-site", {"sec_fetch_site": "cross-site"})
        return await handler(request)

    @web.middleware
    async def token_check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not policy.auth_token:
            return await handler(request)
        if not token_ok(policy, request):
            return json_error(401, "unauthorized", "Missing or wrong auth token.",
                              "Send 'Authorization: Bearer <token>' or a 'token' query "
                              "parameter.", headers={"WWW-Authenticate": 'Bearer realm="kinema"'})
        response = await handler(request)
        if given_token(request)[1] == "query" and request.path == "/":
            # The page's scripts and styles cannot send a header: opening /?token=T once
            # leaves the token in a cookie that only this site's own requests carry.
            response.set_cookie(TOKEN_COOKIE, policy.auth_token, httponly=True,
                                samesite="Strict", path="/")
        return response

    @web.middleware
    async def body_size(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = body_limit(policy, request)
        length = request.content_length
        if length is not None and length > limit:
            return too_large(limit, "upload" if _is_multipart(request) else "request body")
        if _is_multipart(request) and request.can_read_body:
            request = request.clone(client_max_size=limit)
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return too_large(limit, "upload" if _is_multipart(request) else "request body")

    return [host_check, origin_check, token_check, body_size]
