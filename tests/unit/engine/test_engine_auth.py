"""Token authentication settings and the header check (iii_typed.engine.auth; protocol.md §1.5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.datastructures import Headers

from iii_typed.engine.auth import check_authorization
from iii_typed.engine.cli import build_parser
from iii_typed.engine.config import ConfigError, EngineConfig


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer tok"}, None),
        ({"authorization": "bearer tok"}, None),
        ({"Authorization": "Bearer  tok "}, None),
        ({}, "missing bearer token"),
        ({"Authorization": "Basic tok"}, "missing bearer token"),
        ({"Authorization": "Bearer"}, "invalid bearer token"),
        ({"Authorization": "Bearer tok2"}, "invalid bearer token"),
        ({"Authorization": "Bearer TOK"}, "invalid bearer token"),
    ],
)
def test_check_authorization(headers: dict[str, str], expected: str | None) -> None:
    assert check_authorization("tok", Headers(headers)) == expected


def test_two_authorization_headers_are_refused() -> None:
    headers = Headers()
    headers["Authorization"] = "Bearer tok"
    headers["Authorization"] = "Bearer other"
    assert check_authorization("tok", headers) == "missing bearer token"


def test_no_token_accepts_everything() -> None:
    assert check_authorization(None, Headers()) is None


def test_precedence_command_line_then_environment_then_file(tmp_path: Path) -> None:
    file = tmp_path / "engine.toml"
    file.write_text('[engine]\nauth_token = "from-file"\n', encoding="utf-8")
    assert EngineConfig.build(file=file, environ={}).auth_token == "from-file"
    env = {"III_ENGINE_TOKEN": "from-env"}
    assert EngineConfig.build(file=file, environ=env).auth_token == "from-env"
    assert EngineConfig.build(file=file, environ=env, auth_token="from-cli").auth_token == "from-cli"
    assert EngineConfig.build(environ={}).auth_token is None
    args = build_parser().parse_args(["--token", "t"])
    assert args.token == "t"


@pytest.mark.parametrize("token", ["", "  ", " padded", "line\nbreak"])
def test_a_blank_or_unprintable_token_is_a_configuration_error(token: str) -> None:
    with pytest.raises(ConfigError, match="auth_token"):
        EngineConfig.build(environ={}, auth_token=token)


def test_the_token_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(EngineConfig.build(environ={}, auth_token="s3cret"))


def test_a_non_string_token_in_the_file_names_the_key(tmp_path: Path) -> None:
    file = tmp_path / "engine.toml"
    file.write_text("[engine]\nauth_token = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"engine\.auth_token"):
        EngineConfig.build(file=file, environ={})
