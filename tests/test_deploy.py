"""Packaging files: Dockerfile, docker-compose, systemd unit (no Docker engine or systemd here).

What can run here runs: the image's HEALTHCHECK command against real HTTP servers on loopback
and `systemd-analyze verify` on the unit. The rest is structure: every file the compose file
mounts exists, the Dockerfile copies what pyproject packages, runs as non-root, and so on.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in _instructions(path):
        if keyword == "FROM":
            m = re.match(r"^(\S+)(?:\s+AS\s+(\S+))?$", args, re.IGNORECASE)
            assert m, args
            current = [(keyword, args)]
            stages[m[2] or m[1]] = current
        else:
            current.append((keyword, args))
    return stages


def _last(stage: list[tuple[str, str]], keyword: str) -> str:
    values = [a for k, a in stage if k == keyword]
    assert values, f"no {keyword}"
    return values[-1]


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_runs_camnet_as_non_root_with_a_healthcheck() -> None:
    stages = _stages(ROOT / "Dockerfile")
    names = list(stages)
    assert names[-1] == "camnet", "the daemon must be the default (last) stage"
    for name, stage in stages.items():
        base = stage[0][1].split()[0]
        assert base in ("python:3.11-slim", *names), f"stage {name} is based on {base}"
    final = stages["camnet"]
    user = _last(final, "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert "9830" in _last(final, "EXPOSE").split()
    assert "/healthz" in " ".join(a for k, a in final if k in ("ENV", "HEALTHCHECK"))
    assert json.loads(_last(final, "ENTRYPOINT")) == ["camnet"]
    assert json.loads(_last(final, "CMD")) == ["run", "--config", "/etc/camnet/camnet.yaml"]
    # no development dependencies in the image
    installs = " ".join(a for s in stages.values() for k, a in s if k == "RUN" and "pip" in a)
    assert "[test]" not in installs and " -e " not in installs


def test_dockerfile_copies_what_pyproject_packages() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    copied = set()
    for keyword, args in _stages(ROOT / "Dockerfile")["build"]:
        if keyword == "COPY" and not args.startswith("--"):
            copied.update(args.split()[:-1])
    for source in copied:
        assert (ROOT / source).exists(), source
    needed = {*pyproject["tool"]["setuptools"]["packages"], "pyproject.toml",
              pyproject["project"]["readme"]}
    assert needed <= copied
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not copied & ignored, "the build context excludes a file the Dockerfile copies"


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _run_healthcheck(url: str) -> int:
    final = _stages(ROOT / "Dockerfile")["camnet"]
    args = _last(final, "HEALTHCHECK")
    command = json.loads(args[args.index("CMD") + 3:].strip())
    assert command[0] == "python"
    env = {"CAMNET_HEALTHZ_URL": url, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                          timeout=30).returncode


def test_healthcheck_command_passes_on_200(http_server: http.server.HTTPServer) -> None:
    _Handler.status = 200
    port = http_server.server_address[1]
    assert _run_healthcheck(f"http://127.0.0.1:{port}/healthz") == 0


def test_healthcheck_command_fails_on_error_and_refusal(http_server: http.server.HTTPServer) -> None:
    port = http_server.server_address[1]
    try:
        _Handler.status = 503
        assert _run_healthcheck(f"http://127.0.0.1:{port}/healthz") != 0
    finally:
        _Handler.status = 200
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, never listening: connections are refused
        assert _run_healthcheck(f"http://127.0.0.1:{closed}/healthz") != 0


def test_healthcheck_url_default_is_the_contract_address() -> None:
    env = " ".join(a for k, a in _stages(ROOT / "Dockerfile")["camnet"] if k == "ENV")
    assert "CAMNET_HEALTHZ_URL=http://127.0.0.1:9830/healthz" in env


# ---------------------------------------------------------------- docker-compose


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_services_share_one_network_namespace_that_outlives_them() -> None:
    services = _compose()["services"]
    assert {"net", "camnet", "prometheus", "alertmanager", "grafana", "lab"} <= set(services)
    # Held by a service that only holds it: camnet restarting must not cut the others off.
    assert set(services["net"]) <= {"image", "sysctls", "ports", "restart"}
    assert "pause" in services["net"]["image"]
    for name, service in services.items():
        if name != "net":
            assert service.get("network_mode") == "service:net", name
            assert "ports" not in service, f"{name}: publish ports on the net service"
    for port in services["net"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), f"{port} would be reachable from the network"
    # Prometheus scrapes camnet on the shared loopback: the repository's prometheus.yml must agree
    prometheus = (ROOT / "config" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    assert "127.0.0.1:9830" in prometheus


def test_compose_alertmanager_speaks_vietnam_time() -> None:
    """The templates print .StartsAt.Local: the container's zone must be Vietnam's, with the
    zone data it needs (the image has none)."""
    am = _compose()["services"]["alertmanager"]
    assert am["environment"]["TZ"] == "Asia/Ho_Chi_Minh"
    assert "/usr/share/zoneinfo:/usr/share/zoneinfo:ro" in am["volumes"]
    templates = (ROOT / "config" / "alertmanager" / "templates" / "camnet.tmpl").read_text(
        encoding="utf-8")
    assert ".StartsAt.Local.Format" in templates


def test_compose_mounts_exist_in_the_repository() -> None:
    compose = _compose()
    checked = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                path = (DEPLOY / source).resolve()
                assert path.is_relative_to(ROOT), f"{name}: {source} is outside the repository"
                assert path.exists(), f"{name}: {source} does not exist"
                checked += 1
            elif source == "/usr/share/zoneinfo":  # the host's time zone data, read-only
                assert volume.endswith(":ro"), volume
            else:
                assert source in compose.get("volumes", {}), f"{name}: unknown volume {source}"
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).is_file()
            assert build["target"] in _stages(context / build.get("dockerfile", "Dockerfile"))
    assert checked >= 5
    # the files the services' command lines name, inside the mounted directories
    for path in ("config/camnet.yaml", "config/prometheus/prometheus.yml",
                 "config/alertmanager/alertmanager.yml", "dashboards/provisioning"):
        assert (ROOT / path).exists(), path
    command = compose["services"]["camnet"]["command"]
    assert command == ["run", "--config", "/etc/camnet/camnet.yaml"]
    assert "../config:/etc/camnet:ro" in compose["services"]["camnet"]["volumes"]


# ---------------------------------------------------------------- systemd


def _unit(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return values


def test_systemd_unit_runs_hardened() -> None:
    unit = _unit(DEPLOY / "camnet.service")
    assert unit["ExecStart"][-1].endswith("camnet run --config /etc/camnet/camnet.yaml")
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["DynamicUser"] == ["yes"] or unit.get("User", ["root"])[-1] != "root"
    # One capability, for ICMP where ping_group_range is closed (Debian 12's default).
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "CAP_NET_RAW",
                       "AmbientCapabilities": "CAP_NET_RAW"}.items():
        assert unit[key] == [value], key


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # deps/apt-packages.txt installs systemd for this: a skip here would hide a broken unit
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: run make install"
    # verify also checks that the binaries exist: point ExecStart at one that does
    text = (DEPLOY / "camnet.service").read_text(encoding="utf-8")
    assert "/opt/camnet/bin/camnet" in text
    unit = tmp_path / "camnet.service"
    unit.write_text(text.replace("/opt/camnet/bin/camnet", "/bin/true"), encoding="utf-8")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)
    # unknown keys are only warnings (exit 0): no output at all is the pass condition
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


# The image installs camnet without the [test] extra: the daemon, check-config and the probers
# must import without any of its packages. A meta-path hook makes them unimportable here.
_WITHOUT_TEST_EXTRA = """
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {"pytest", "_pytest", "pytest_asyncio", "pytest_timeout", "hypothesis", "snmpsim",
           "snmpsim_data", "mypy", "ruff"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
import probes
for info in pkgutil.iter_modules(probes.__path__):
    importlib.import_module(f"probes.{info.name}")
import monitor.daemon
from monitor.cli import build_parser, main
build_parser()
sys.exit(main(["check-config", "config/camnet.yaml"]))
"""


def test_daemon_runs_without_the_test_extra() -> None:
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TEST_EXTRA], cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK (37 sites" in proc.stdout
