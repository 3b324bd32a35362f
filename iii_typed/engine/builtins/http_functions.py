"""``iii-http-functions``: functions the engine executes over HTTP (protocol.md §2.1, §6.7, golden frame X07).

A worker registers such a function with ``registerfunction.invocation`` (our SDK:
``register_function(id, HttpInvocationConfig(...))``). Every call then becomes one HTTP request
from the engine:

* ``method`` (default ``POST``) to ``url``, body = the call's ``data`` as JSON, redirects not
  followed, ``timeout_ms`` (default ``default_timeout_ms``, 30 s);
* headers ``Content-Type: application/json``, the registration's ``headers``, then
  ``x-iii-Function-Path: <function id>``, ``x-iii-Invocation-ID: <fresh uuid4>``,
  ``x-iii-Timestamp: <Unix seconds>`` and the auth header:

  * ``{"type": "hmac", "secret_key": "ENV"}`` → ``x-iii-Signature: sha256=<hex(HMAC-SHA256(secret,
    "<timestamp>:<base64(body)>"))>`` (standard base64 with padding);
  * ``{"type": "bearer", "token_key": "ENV"}`` → ``Authorization: Bearer <token>``;
  * ``{"type": "api_key", "header": "X-Api-Key", "value_key": "ENV"}`` → that header.

  ``*_key`` values name environment variables of the **engine** process.

Response mapping: 2xx with an empty body → no result; 2xx JSON → the result; 2xx not JSON →
``invalid_response``; 1xx/3xx → the JSON body if it parses, else no result; ≥ 400 → the body's
``{"error": {"code", "message"}}`` if present, else ``http_error`` / ``HTTP <status>``; transport
failure or timeout → ``http_request_failed``; body read failure → ``http_response_failed``.

URL policy (``[http-functions.security]``): ``url_allowlist`` (host patterns, ``*`` wildcards,
default ``["*"]``), ``block_private_ips`` (default true), ``require_https`` (default true), and
the dev-engine extension ``allow_loopback`` (default true): loopback hosts (``localhost``,
127.0.0.0/8, ``::1``) pass the private-address and https rules, so a worker can serve its
functions from a local web server. Registrations are checked when they arrive (a refused one is
logged and not registered, like the real engine: callers get ``function_not_found``); each call
checks the URL again after resolving the host (``url_validation_failed``).

Opt-in, as in the real engine: enable it with ``[http-functions] enabled = true`` or
``builtins = [..., "http-functions"]``. Without it HTTP-invoked registrations are ignored with a
WARNING.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import hmac
import ipaddress
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import aiohttp

from ..config import ConfigError
from ._http_response import dumps, loads
from .base import BuiltinError, BuiltinWorker, EngineServices

__all__ = [
    "BUILTIN",
    "DEFAULT_TIMEOUT_MS",
    "HttpFunctionsWorker",
    "UrlPolicy",
    "parse_policy",
    "sign",
]

log = logging.getLogger("iii_typed.engine.http_functions")

#: Request timeout when the registration gives no ``timeout_ms`` (ms).
DEFAULT_TIMEOUT_MS: Final = 30_000
_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_KEYS: Final = frozenset({"enabled", "default_timeout_ms", "security"})
_SECURITY_KEYS: Final = frozenset({"url_allowlist", "block_private_ips", "require_https", "allow_loopback"})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``x-iii-Signature`` value (protocol.md §6.7, golden frame X07).

    Args:
        secret: The HMAC secret (the value of the ``secret_key`` variable).
        timestamp: The ``x-iii-Timestamp`` value (Unix seconds as text).
        body: The exact request body bytes.

    Returns:
        ``sha256=<hex digest of HMAC-SHA256(secret, "<timestamp>:<base64(body)>")>``.
    """
    message = f"{timestamp}:{base64.b64encode(body).decode('ascii')}".encode()
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Which URLs HTTP-invoked functions may call (see the module docstring).

    Attributes:
        url_allowlist: Host patterns (``*`` = any, ``*.example.com``, ``api.example.com:8443``).
        block_private_ips: Refuse private, loopback, link-local and other non-public addresses.
        require_https: Refuse ``http://`` URLs.
        allow_loopback: Loopback hosts are exempt from the two rules above (dev engine).
    """

    url_allowlist: tuple[str, ...] = ("*",)
    block_private_ips: bool = True
    require_https: bool = True
    allow_loopback: bool = True

    def check_static(self, url: str) -> str | None:
        """Check what can be checked without DNS.

        Returns:
            Why the URL is refused, or ``None``.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            return f"invalid URL {url!r}: {exc}"
        if parts.scheme not in ("http", "https"):
            return f"URL {url!r} must use http or https"
        host = (parts.hostname or "").lower()
        if not host:
            return f"URL {url!r} has no host"
        loopback = self.allow_loopback and _is_loopback_name(host)
        if self.require_https and parts.scheme != "https" and not loopback:
            return f"URL {url!r} must use https (security.require_https)"
        if not self._allowed(host, port):
            return f"host {host!r} of URL {url!r} is not in security.url_allowlist"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        return self._address_problem(address, url)

    def _allowed(self, host: str, port: int | None) -> bool:
        for pattern in self.url_allowlist:
            pattern = pattern.lower()
            if pattern == "*":
                return True
            target = f"{host}:{port}" if ":" in pattern and port is not None else host
            if fnmatch.fnmatchcase(target, pattern):
                return True
        return False

    def _address_problem(
        self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, url: str
    ) -> str | None:
        if not self.block_private_ips:
            return None
        if address.is_loopback and self.allow_loopback:
            return None
        if not address.is_global or address.is_multicast:
            return f"URL {url!r} resolves to the non-public address {address} (security.block_private_ips)"
        return None

    async def check_resolved(self, url: str) -> str | None:
        """:meth:`check_static`, then every address the host resolves to.

        Returns:
            Why the URL is refused, or ``None``.
        """
        problem = self.check_static(url)
        if problem is not None or not self.block_private_ips:
            return problem
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host)
            return None  # a literal address was checked already
        except ValueError:
            pass
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return f"cannot resolve host {host!r} of URL {url!r}: {exc}"
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            problem = self._address_problem(address, url)
            if problem is not None:
                return problem
        return None


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bool(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"http-functions.security.{key} must be true or false")
    return value


def parse_policy(table: Mapping[str, Any]) -> tuple[UrlPolicy, int]:
    """Read the ``[http-functions]`` table.

    Returns:
        The URL policy and the default timeout in ms.

    Raises:
        ConfigError: an unknown key or a bad value (the message names the key).
    """
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(
            f"unknown key http-functions.{sorted(unknown)[0]} (known: {', '.join(sorted(_KEYS))})"
        )
    timeout = table.get("default_timeout_ms", DEFAULT_TIMEOUT_MS)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise ConfigError("http-functions.default_timeout_ms must be a positive integer")
    security = table.get("security", {})
    if not isinstance(security, dict):
        raise ConfigError("http-functions.security must be a table")
    unknown = set(security) - _SECURITY_KEYS
    if unknown:
        known = ", ".join(sorted(_SECURITY_KEYS))
        raise ConfigError(f"unknown key http-functions.security.{sorted(unknown)[0]} (known: {known})")
    allowlist = security.get("url_allowlist", ["*"])
    if not isinstance(allowlist, list) or not all(isinstance(item, str) for item in allowlist):
        raise ConfigError("http-functions.security.url_allowlist must be a list of host patterns")
    policy = UrlPolicy(
        url_allowlist=tuple(allowlist),
        block_private_ips=_bool(security, "block_private_ips", True),
        require_https=_bool(security, "require_https", True),
        allow_loopback=_bool(security, "allow_loopback", True),
    )
    return policy, timeout


def _auth_headers(auth: Any, timestamp: str, body: bytes) -> list[tuple[str, str]]:
    """Headers for the registration's ``auth`` (secrets read from the engine's environment).

    Raises:
        ValueError: an unknown auth type or a variable that is not set.
    """
    if auth is None:
        return []
    if not isinstance(auth, Mapping):
        raise ValueError("auth must be an object")
    kind = auth.get("type")

    def env(field: str) -> str:
        name = auth.get(field)
        if not isinstance(name, str) or not name:
            raise ValueError(f"auth.{field} must name an environment variable")
        value = os.environ.get(name)
        if value is None:
            raise ValueError(f"environment variable {name} (auth.{field}) is not set on the engine host")
        return value

    if kind == "hmac":
        return [("x-iii-Signature", sign(env("secret_key"), timestamp, body))]
    if kind == "bearer":
        return [("Authorization", f"Bearer {env('token_key')}")]
    if kind == "api_key":
        header = auth.get("header")
        if not isinstance(header, str) or not header.strip():
            raise ValueError("auth.header must be a header name")
        return [(header, env("value_key"))]
    raise ValueError(f"unknown auth type {kind!r} (hmac, bearer or api_key)")


def _http_error(status: int, body: bytes) -> BuiltinError:
    try:
        parsed = loads(body) if body else None
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return BuiltinError(
            code if isinstance(code, str) and code else "http_error",
            message if isinstance(message, str) else f"HTTP {status}",
        )
    return BuiltinError("http_error", f"HTTP {status}")


class HttpFunctionsWorker(BuiltinWorker):
    """Serves HTTP-invoked functions (see the module docstring)."""

    name: ClassVar[str] = "iii-http-functions"
    section: ClassVar[str] = "http-functions"
    description: ClassVar[str] = "Functions the engine invokes over HTTP (registerfunction.invocation)"
    default_enabled: ClassVar[bool] = False
    order: ClassVar[int] = 65

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        self.policy, self.default_timeout_ms = parse_policy(services.section(self.section))
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client and take over HTTP-invoked registrations."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        self.services.set_http_function_invoker(self.invoke, self.validate)

    async def stop(self) -> None:
        """Close the HTTP client."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def validate(self, function: Mapping[str, Any]) -> str | None:
        """Registration check: URL policy (without DNS), method and auth variables.

        Returns:
            Why the registration is refused, or ``None``.
        """
        url = function.get("url")
        if not isinstance(url, str):
            return "url_validation_failed: url must be a string"
        problem = self.policy.check_static(url)
        if problem is not None:
            return f"url_validation_failed: {problem}"
        if function.get("method", "POST") not in _METHODS:
            return f"method {function.get('method')!r} must be one of {', '.join(sorted(_METHODS))}"
        try:
            _auth_headers(function.get("auth"), "0", b"")
        except ValueError as exc:
            return f"auth: {exc}"
        return None

    async def invoke(self, function: Mapping[str, Any], data: Any, metadata: Any) -> Any:
        """Execute one call over HTTP (the invoker of ``EngineServices.set_http_function_invoker``).

        Args:
            function: The registration's ``invocation`` plus ``function_id``.
            data: The call's payload (sent as the JSON body).
            metadata: The metadata sidecar (not sent).

        Returns:
            The result (``None`` for no result).

        Raises:
            BuiltinError: ``url_validation_failed``, ``http_request_failed``,
                ``http_response_failed``, ``invalid_response``, ``http_error`` or the code of the
                endpoint's ``{"error": …}`` body.
        """
        session = self._session
        function_id = str(function.get("function_id", ""))
        url = str(function.get("url", ""))
        if session is None:
            raise BuiltinError("http_request_failed", "HTTP-invoked functions are stopping")
        problem = await self.policy.check_resolved(url)
        if problem is not None:
            raise BuiltinError("url_validation_failed", problem)
        try:
            body = dumps(data)
        except TypeError as exc:
            raise BuiltinError("serialization_error", str(exc)) from None
        timestamp = str(int(time.time()))
        headers: dict[str, str] = {"Content-Type": "application/json"}
        extra = function.get("headers")
        if isinstance(extra, Mapping):
            headers.update({str(k): str(v) for k, v in extra.items()})
        headers["x-iii-Function-Path"] = function_id
        headers["x-iii-Invocation-ID"] = str(uuid.uuid4())
        headers["x-iii-Timestamp"] = timestamp
        try:
            headers.update(_auth_headers(function.get("auth"), timestamp, body))
        except ValueError as exc:
            raise BuiltinError("http_request_failed", f"auth: {exc}") from None
        timeout_ms = function.get("timeout_ms") or self.default_timeout_ms
        method = str(function.get("method", "POST"))
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000),
            ) as response:
                status = response.status
                try:
                    content = await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise BuiltinError(
                        "http_response_failed", f"reading the response failed: {exc}"
                    ) from None
        except TimeoutError:
            raise BuiltinError(
                "http_request_failed", f"request to {url} timed out after {timeout_ms} ms"
            ) from None
        except aiohttp.ClientError as exc:
            raise BuiltinError("http_request_failed", f"request to {url} failed: {exc}") from None
        log.debug("%s %s → %s for %s", method, url, status, function_id)
        if status >= 400:
            raise _http_error(status, content)
        if 200 <= status < 300:
            if not content.strip():
                return None
            try:
                return loads(content)
            except ValueError:
                raise BuiltinError(
                    "invalid_response", f"{function_id}: HTTP {status} response body is not JSON"
                ) from None
        try:
            return loads(content) if content.strip() else None
        except ValueError:
            return None


BUILTIN = HttpFunctionsWorker
