"""Engine configuration: defaults, engine.toml, the port-0 rule (decisions "Engine command line")."""

from __future__ import annotations

from pathlib import Path

import pytest

from iii_typed.engine.cli import build_parser
from iii_typed.engine.config import ConfigError, EngineConfig, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults():
    config = EngineConfig.build(environ={})
    assert (config.host, config.port, config.http_port, config.stream_port) == (
        "127.0.0.1",
        49134,
        3111,
        3112,
    )
    assert config.data_dir is None and config.builtins is None
    assert config.namespace_grace_ms == 5000 and config.log_level == "INFO"


def test_port_zero_frees_only_ports_not_given_explicitly():
    assert (
        EngineConfig.build(port=0, environ={}).http_port,
        EngineConfig.build(port=0, environ={}).stream_port,
    ) == (0, 0)
    config = EngineConfig.build(port=0, http_port=8080, environ={})
    assert (config.http_port, config.stream_port) == (8080, 0)


def test_file_values_count_as_explicit(tmp_path):
    path = _write(
        tmp_path, "[engine]\nport = 0\nstream_port = 9000\ndata_dir = 'data'\nbuiltins = ['state']\n"
    )
    config = EngineConfig.build(file=path, environ={})
    assert (config.port, config.http_port, config.stream_port) == (0, 0, 9000)
    assert config.data_dir == tmp_path / "data"
    assert config.builtins == ("state",)
    assert config.source == path


def test_command_line_wins_over_the_file(tmp_path):
    path = _write(tmp_path, "[engine]\nport = 1234\nhost = '127.0.0.2'\nlog_level = 'DEBUG'\n")
    config = EngineConfig.build(file=path, port=4321, data_dir=tmp_path, environ={})
    assert config.port == 4321 and config.host == "127.0.0.2" and config.data_dir == tmp_path
    assert config.log_level == "DEBUG"


def test_environment_overrides(tmp_path):
    config = EngineConfig.build(environ={"III_NAMESPACE_GRACE_MS": "250", "III_LOG": "WARNING"})
    assert config.namespace_grace_ms == 250 and config.log_level == "WARNING"
    assert EngineConfig.build(log_level="ERROR", environ={"III_LOG": "DEBUG"}).log_level == "ERROR"
    with pytest.raises(ConfigError, match="III_NAMESPACE_GRACE_MS"):
        EngineConfig.build(environ={"III_NAMESPACE_GRACE_MS": "soon"})


def test_sections_and_enabled(tmp_path):
    path = _write(tmp_path, "[state]\nenabled = false\nmax = 3\n[cron]\nx = 1\n")
    config = load_config(path)
    assert config.section("state") == {"enabled": False, "max": 3}
    assert config.section("missing") == {}
    assert config.enabled("iii-state", "state", default=True) is False
    assert config.enabled("iii-cron", "cron", default=True) is True
    config.builtins = ("iii-http",)
    assert config.enabled("iii-http", "http", default=False) is True
    assert config.enabled("iii-cron", "cron", default=True) is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[engine]\nport = true\n", "engine.port must be int"),
        ("[engine]\nbogus = 1\n", "unknown key engine.bogus"),
        ("[engine]\nbuiltins = [1]\n", "engine.builtins must be a list of names"),
        ("engine = 3\n", "[engine] must be a table"),
        ("loose = 3\n", "top-level key 'loose' must be a table"),
        ("[engine]\nnamespace_grace_ms = -1\n", "namespace_grace_ms must be >= 0"),
        ("not toml [", "is not valid TOML"),
    ],
)
def test_bad_files(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert message in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")


def test_parser_matches_the_documented_command_line():
    args = build_parser().parse_args(
        [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--http-port",
            "1",
            "--stream-port",
            "2",
            "--data-dir",
            "d",
            "--config",
            "c",
        ]
    )
    assert (args.host, args.port, args.http_port, args.stream_port, args.data_dir, args.config) == (
        "127.0.0.1",
        0,
        1,
        2,
        "d",
        "c",
    )
