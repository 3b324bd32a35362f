"""Route table of the ``http`` built-in (protocol.md §6.6, trigger type ``http``).

Pure data structures, no I/O. A route is an HTTP method plus an ``api_path`` whose segments are
literals or parameters (``:name``, and ``{name}`` which routes the same way). Rules:

* Methods are ``GET POST PUT DELETE PATCH HEAD OPTIONS``, case-insensitive in the config.
* A path without a leading ``/`` gets one; a trailing ``/`` is ignored (``/users/`` is ``/users``).
* Matching prefers a literal segment over a parameter at the same position (``/users/me`` wins
  over ``/users/:id``); a parameter never matches an empty segment. Segments are percent-decoded
  after splitting, so ``%2F`` stays inside one parameter.
* Two bindings with the same method and the same shape (literals equal, parameters at the same
  positions) but different parameter names conflict: the second is refused with a message naming
  the existing route (``trigger_registration_failed``).
* The same method and path registered again replaces the route: the newest binding serves it.
  The earlier bindings are kept underneath, so removing the newest one uncovers the previous one
  instead of leaving a 404.
* ``HEAD`` falls back to the ``GET`` route of the same path when no ``HEAD`` route exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

from .base import TriggerBinding

__all__ = [
    "HTTP_METHODS",
    "Route",
    "RouteConflictError",
    "RouteTable",
    "normalize_path",
    "parse_method",
    "split_path",
]

#: Methods an ``http`` trigger may name (protocol.md §6.6).
HTTP_METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


class RouteConflictError(ValueError):
    """A route has the same method and shape as an existing one but other parameter names."""


def parse_method(value: object) -> str:
    """Validate an ``http_method`` value (default ``GET``).

    Returns:
        The upper-case method.

    Raises:
        ValueError: not a string, or not one of :data:`HTTP_METHODS`.
    """
    if value is None:
        return "GET"
    if not isinstance(value, str):
        raise ValueError(f"http_method must be a string, got {type(value).__name__}")
    method = value.strip().upper()
    if method not in HTTP_METHODS:
        known = ", ".join(sorted(HTTP_METHODS))
        raise ValueError(f"http_method {value!r} is not supported (use one of {known})")
    return method


def normalize_path(api_path: str) -> str:
    """``users/:id/`` → ``/users/:id`` (leading slash added, trailing slash dropped)."""
    path = api_path.strip()
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return path


def split_path(raw_path: str) -> list[str]:
    """Split a request path (still percent-encoded) into decoded segments.

    ``/`` → ``[]``; ``/a/b/`` → ``["a", "b"]``; ``/a%2Fb`` → ``["a/b"]``.
    """
    path = raw_path.split("?", 1)[0]
    if path.endswith("/"):
        path = path.rstrip("/")
    if not path:
        return []
    parts = path[1:].split("/") if path.startswith("/") else path.split("/")
    return [unquote(part) if "%" in part else part for part in parts]


def _param_name(segment: str) -> str | None:
    if len(segment) > 1 and segment[0] == ":":
        return segment[1:]
    if len(segment) > 2 and segment[0] == "{" and segment[-1] == "}":
        return segment[1:-1]
    return None


@dataclass(eq=False, slots=True)
class Route:
    """One method + path and the bindings registered for it (newest last).

    Attributes:
        method: Upper-case method.
        path: Normalized path, e.g. ``/users/:id``.
        params: Parameter name of each segment, ``None`` for literals.
        bindings: Bindings for this exact method and path; the last one serves requests.
    """

    method: str
    path: str
    params: tuple[str | None, ...]
    bindings: list[TriggerBinding] = field(default_factory=list)

    @property
    def binding(self) -> TriggerBinding:
        """The binding that serves this route (the most recently registered)."""
        return self.bindings[-1]


@dataclass(eq=False, slots=True)
class _Node:
    literals: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    routes: dict[str, Route] = field(default_factory=dict)


class RouteTable:
    """Routes by method and path (see the module docstring)."""

    def __init__(self) -> None:
        self._root = _Node()
        self._by_binding: dict[str, Route] = {}

    def __len__(self) -> int:
        return len(self._by_binding)

    def routes(self) -> list[Route]:
        """Every route with at least one binding."""
        seen: dict[int, Route] = {}
        for route in self._by_binding.values():
            seen[id(route)] = route
        return list(seen.values())

    def add(self, binding: TriggerBinding, method: str, api_path: str) -> Route:
        """Route ``method api_path`` to ``binding``.

        Returns:
            The route (shared with earlier bindings of the same method and path).

        Raises:
            RouteConflictError: another route has this method and shape with other parameter
                names.
        """
        self.remove(binding.id)
        path = normalize_path(api_path)
        segments = split_path(path) if path != "/" else []
        params = tuple(_param_name(segment) for segment in segments)
        node = self._root
        for segment, name in zip(segments, params, strict=True):
            if name is None:
                node = node.literals.setdefault(segment, _Node())
            else:
                if node.param is None:
                    node.param = _Node()
                node = node.param
        route = node.routes.get(method)
        if route is None:
            route = Route(method=method, path=path, params=params)
            node.routes[method] = route
        elif route.params != params:
            raise RouteConflictError(
                f"route conflict: {method} {path} has the same shape as {method} {route.path} "
                "with different parameter names"
            )
        route.bindings.append(binding)
        self._by_binding[binding.id] = route
        return route

    def remove(self, binding_id: str) -> bool:
        """Remove a binding; the route disappears with its last binding.

        Returns:
            Whether the binding was routed.
        """
        route = self._by_binding.pop(binding_id, None)
        if route is None:
            return False
        route.bindings = [b for b in route.bindings if b.id != binding_id]
        if not route.bindings:
            self._drop(route)
        return True

    def _drop(self, route: Route) -> None:
        trail: list[tuple[_Node, str | None]] = []
        node = self._root
        segments = split_path(route.path) if route.path != "/" else []
        for segment, name in zip(segments, route.params, strict=True):
            trail.append((node, segment if name is None else None))
            child = node.literals.get(segment) if name is None else node.param
            if child is None:
                return
            node = child
        node.routes.pop(route.method, None)
        # Prune empty branches so the trie does not grow with churn.
        for parent, key in reversed(trail):
            child = parent.literals.get(key) if key is not None else parent.param
            if child is None or child.routes or child.literals or child.param is not None:
                break
            if key is not None:
                del parent.literals[key]
            else:
                parent.param = None

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        """Find the route for a request.

        Args:
            method: Upper-case request method.
            raw_path: The request path, percent-encoded (query string ignored).

        Returns:
            The route and its decoded path parameters, or ``None`` (404).
        """
        segments = split_path(raw_path)
        values: list[str] = []
        node = self._find(self._root, segments, 0, method, values)
        if node is None and method == "HEAD":
            method = "GET"
            values = []
            node = self._find(self._root, segments, 0, method, values)
        if node is None:
            return None
        route = node.routes[method]
        params: dict[str, str] = {}
        names = (name for name in route.params if name is not None)
        for name, value in zip(names, values, strict=True):
            params[name] = value
        return route, params

    def _find(
        self, node: _Node, segments: list[str], index: int, method: str, values: list[str]
    ) -> _Node | None:
        if index == len(segments):
            return node if method in node.routes else None
        segment = segments[index]
        child = node.literals.get(segment)
        if child is not None:
            found = self._find(child, segments, index + 1, method, values)
            if found is not None:
                return found
        if node.param is not None and segment:
            values.append(segment)
            found = self._find(node.param, segments, index + 1, method, values)
            if found is not None:
                return found
            values.pop()
        return None
