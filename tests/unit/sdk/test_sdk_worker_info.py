"""Worker identity: name precedence, namespace resolution, engine::workers::register data (§3.3)."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

import pytest

from iii_typed import InitOptions, TelemetryOptions
from iii_typed._worker_info import (
    FEATURES,
    SDK_VERSION,
    allocate_unnamed_suffix,
    resolve_namespace,
    resolve_worker_name,
    worker_metadata,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("III_WORKER_NAME", "III_NAMESPACE", "III_ISOLATION"):
        monkeypatch.delenv(name, raising=False)


def test_name_precedence_env_then_option_then_hostname_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    base = f"{socket.gethostname()}:{os.getpid()}"
    assert resolve_worker_name(InitOptions(), 1) == base
    assert resolve_worker_name(InitOptions(), 2) == f"{base}:2"
    assert resolve_worker_name(InitOptions(worker_name="opt"), 0) == "opt"
    monkeypatch.setenv("III_WORKER_NAME", "math-worker")
    assert resolve_worker_name(InitOptions(worker_name="opt"), 0) == "math-worker"
    monkeypatch.setenv("III_WORKER_NAME", "")
    assert resolve_worker_name(InitOptions(worker_name="opt"), 0) == "opt"


def test_unnamed_suffixes_increase() -> None:
    first = allocate_unnamed_suffix()
    assert allocate_unnamed_suffix() == first + 1


def test_namespace_option_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_namespace(InitOptions()) is None
    monkeypatch.setenv("III_NAMESPACE", "  ")
    assert resolve_namespace(InitOptions()) is None
    monkeypatch.setenv("III_NAMESPACE", "orders")
    assert resolve_namespace(InitOptions()) == "orders"
    assert resolve_namespace(InitOptions(namespace="billing")) == "billing"
    opts = InitOptions()
    opts.namespace = " "
    with pytest.raises(ValueError, match="blank"):
        resolve_namespace(opts)


def test_metadata_fields_and_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("III_ISOLATION", "docker")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "my-proj"\n')
    data = worker_metadata(InitOptions(worker_description="A worker"), "w", "orders")
    assert list(data) == [
        "runtime",
        "version",
        "name",
        "os",
        "pid",
        "isolation",
        "namespace",
        "telemetry",
        "features",
        "description",
    ]
    assert data["runtime"] == "python" and data["version"] == SDK_VERSION and data["version"] != "unknown"
    assert data["os"] == f"{platform.system()} {platform.release()} ({platform.machine()})"
    assert data["pid"] == os.getpid() and data["isolation"] == "docker" and data["namespace"] == "orders"
    assert data["telemetry"] == {"language": "C", "project_name": "my-proj", "framework": "iii-typed"}
    assert data["features"] == ["large-messages.v1"] == list(FEATURES)
    assert not any(f.startswith(("observe", "local-dispatch")) for f in data["features"])


def test_metadata_defaults_and_telemetry_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LANG", raising=False)
    monkeypatch.chdir(tmp_path)
    data = worker_metadata(InitOptions(), "w", None)
    assert "description" not in data
    assert data["isolation"] is None and data["namespace"] is None
    assert data["telemetry"] == {"language": None, "project_name": tmp_path.name, "framework": "iii-typed"}
    tele = TelemetryOptions(language="python", project_name="p", framework="fw")
    data = worker_metadata(InitOptions(telemetry=tele), "w", None)
    assert data["telemetry"] == {"language": "python", "project_name": "p", "framework": "fw"}
