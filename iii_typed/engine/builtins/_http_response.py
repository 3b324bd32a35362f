"""Bodies the ``http`` built-in writes: error envelopes and buffered handler results (protocol.md §6.6).

Error envelope (golden frames H02, H03): ``{"error": {"code": …, "message": …, "error_id"?: …}}``,
plus ``"skipped": true`` for an unmet condition (422).

Buffered response (option A, golden frame H01): the handler returns an object
``{status_code?: int = 200, headers?: {"Name": "v"} | ["Name: v", …], body?: any = {}}``. Body
encoding:

* with a ``Content-Type`` among the handler's headers (any case): a string body is sent as its
  UTF-8 bytes, ``null`` as an empty body, anything else as its JSON text;
* without one: the body's JSON text with ``content-type: application/json``.

JSON is compact with keys sorted, as the real engine's ``serde_json`` writes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final

_orjson: ModuleType | None
try:  # orjson is optional (the ``fast`` extra)
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised without the extra
    _orjson = None

__all__ = [
    "CONDITION_NOT_MET",
    "JSON_CONTENT_TYPE",
    "BufferedResponse",
    "InvalidResponseError",
    "buffered_response",
    "dumps",
    "error_envelope",
    "loads",
]

JSON_CONTENT_TYPE: Final = "application/json"

#: Body of the 422 answer when the route's condition returns ``false`` (golden frame H03).
CONDITION_NOT_MET: Final = (
    b'{"error":{"code":"CONDITION_NOT_MET","message":"Request condition not met"},"skipped":true}'
)


def dumps(value: Any) -> bytes:
    """Compact JSON with sorted keys (UTF-8).

    Raises:
        TypeError: ``value`` is not JSON-compatible.
    """
    if _orjson is not None:
        try:
            data: bytes = _orjson.dumps(value, option=_orjson.OPT_SORT_KEYS | _orjson.OPT_NON_STR_KEYS)
        except _orjson.JSONEncodeError as exc:
            raise TypeError(str(exc)) from None
        return data
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def loads(data: bytes) -> Any:
    """Parse JSON bytes.

    Raises:
        ValueError: not valid JSON.
    """
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)


def error_envelope(code: str, message: str, error_id: str | None = None) -> bytes:
    """``{"error":{"code":…,"error_id"?:…,"message":…}}`` as bytes."""
    error: dict[str, str] = {"code": code, "message": message}
    if error_id is not None:
        error["error_id"] = error_id
    return dumps({"error": error})


class InvalidResponseError(ValueError):
    """A handler or middleware result that cannot be turned into an HTTP response."""


@dataclass(slots=True)
class BufferedResponse:
    """An HTTP response ready to send.

    Attributes:
        status: Status code.
        headers: ``(name, value)`` pairs in order (a name may repeat).
        body: The body bytes.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def parse_status(value: Any) -> int:
    """Validate a final status code (200-599).

    A 1xx is an interim response: sent as the answer, the client keeps waiting for a final
    response that never comes (and the body is lost).

    Raises:
        InvalidResponseError: not an integer in range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidResponseError(f"status_code must be an integer, got {type(value).__name__}")
    if not 200 <= value <= 599:
        why = " (a 1xx is an interim response, not an answer)" if 100 <= value <= 199 else ""
        raise InvalidResponseError(f"status_code must be between 200 and 599, got {value}{why}")
    return value


#: An HTTP header name (RFC 9110 ``token``).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Characters no header value may hold (RFC 9110: controls other than HTAB); the HTTP server
#: refuses to write them and drops the connection without a response.
_VALUE_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _header_name(name: Any) -> str:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise InvalidResponseError(f"invalid header name {name!r}")
    return name


def _header_value(name: str, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    else:
        raise InvalidResponseError(f"header {name!r} must have a string value, got {type(value).__name__}")
    if "\r" in text or "\n" in text:
        raise InvalidResponseError(f"header {name!r} contains a line break")
    if match := _VALUE_CONTROLS.search(text):
        raise InvalidResponseError(f"header {name!r} contains a control character ({match.group()!r})")
    return text


def parse_headers(value: Any) -> list[tuple[str, str]]:
    """Headers as a map (``{"Name": "v"}``, a list value repeats the header) or ``["Name: v"]``.

    Raises:
        InvalidResponseError: another shape, a name that is not an HTTP token, or a value with a
            line break or another control character.
    """
    pairs: list[tuple[str, str]] = []
    if value is None:
        return pairs
    if isinstance(value, Mapping):
        for name, item in value.items():
            _header_name(name)
            values = item if isinstance(item, list) else [item]
            pairs.extend((name, _header_value(name, v)) for v in values)
        return pairs
    if isinstance(value, list):
        for line in value:
            if not isinstance(line, str) or ":" not in line:
                raise InvalidResponseError(f"header lines must look like 'Name: value', got {line!r}")
            name, _, text = line.partition(":")
            name = _header_name(name.strip())
            pairs.append((name, _header_value(name, text.strip())))
        return pairs
    raise InvalidResponseError(
        f"headers must be an object or a list of 'Name: value' strings, got {type(value).__name__}"
    )


def content_type(headers: list[tuple[str, str]]) -> str | None:
    """The value of the first ``Content-Type`` header (any case), if any."""
    for name, value in headers:
        if name.lower() == "content-type":
            return value
    return None


def encode_body(body: Any, headers: list[tuple[str, str]]) -> bytes:
    """Encode a result's ``body`` by the rules of the module docstring (appends the JSON type).

    Raises:
        InvalidResponseError: the body is not JSON-compatible.
    """
    if content_type(headers) is not None:
        if isinstance(body, str):
            return body.encode("utf-8", "surrogatepass")
        if body is None:
            return b""
    else:
        headers.append(("content-type", JSON_CONTENT_TYPE))
    try:
        return dumps(body)
    except TypeError as exc:
        raise InvalidResponseError(f"body is not JSON-compatible: {exc}") from None


def buffered_response(result: Any) -> BufferedResponse:
    """Turn a handler's (or a middleware's ``response``) object into an HTTP response.

    Args:
        result: ``{status_code?, headers?, body?}``; other keys are ignored.

    Raises:
        InvalidResponseError: not an object, or a bad status code, header or body.
    """
    if not isinstance(result, Mapping):
        raise InvalidResponseError(
            "the handler must return an object {status_code, headers, body} (or null and stream the "
            f"response through the response channel), got {type(result).__name__}"
        )
    status = parse_status(result.get("status_code", 200))
    headers = parse_headers(result.get("headers"))
    body = encode_body(result.get("body", {}), headers)
    return BufferedResponse(status=status, headers=headers, body=body)
