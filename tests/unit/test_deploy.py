"""deploy/ stays in step with the code: the compose file parses, its ports, setting names, commands,
health endpoints and service wiring agree with vlserve's settings, CLI and routes (a test fails on
drift), and the Dockerfiles pin their base images and run commands that exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlserve.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_services_and_their_images(compose):
    assert set(compose["services"]) == {"triton", "gateway", "ui"}
    for service in compose["services"].values():
        assert ":" in service["image"] and not service["image"].endswith(":latest")


def test_every_vlserve_variable_is_a_setting(compose):
    fields = set(Settings.model_fields)
    for name, service in compose["services"].items():
        for var in service.get("environment", {}):
            if var.startswith("VLSERVE_"):
                assert var.removeprefix("VLSERVE_").lower() in fields, (name, var)


def test_ports_agree_with_the_defaults(compose):
    s = Settings()
    services = compose["services"]
    gateway, ui, triton = services["gateway"]["command"], services["ui"]["command"], services["triton"]["command"]
    assert int(option(gateway, "--port")) == s.gateway_port and f"{s.gateway_port}:{s.gateway_port}" in \
        services["gateway"]["ports"]
    assert int(option(ui, "--port")) == s.ui_port and f"{s.ui_port}:{s.ui_port}" in services["ui"]["ports"]
    grpc = next(int(a.split("=")[1]) for a in triton if a.startswith("--grpc-port="))
    http = next(int(a.split("=")[1]) for a in triton if a.startswith("--http-port="))
    assert services["gateway"]["environment"]["VLSERVE_TRITON_URL"] == f"triton:{grpc}"
    assert f"http://localhost:{http}/v2/health/ready" in services["triton"]["healthcheck"]["test"]
    assert option(ui, "--gateway-url") == f"http://gateway:{option(gateway, '--port')}"


def test_health_checks_use_routes_that_exist(compose):
    from vlserve.gateway.app import create_app

    routes = set(create_app(Settings()).openapi()["paths"])
    probe = " ".join(compose["services"]["gateway"]["healthcheck"]["test"])
    path = re.search(r"localhost:\d+(/[a-z]+)", probe)
    assert path and path.group(1) in routes
    from vlserve.serving.launcher import GatewayServer, UIServer

    assert path.group(1) in ("/readyz", GatewayServer.probe)
    assert UIServer.probe in " ".join(compose["services"]["ui"]["healthcheck"]["test"])
    assert compose["services"]["gateway"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert compose["services"]["ui"]["depends_on"]["gateway"]["condition"] == "service_healthy"


def test_the_index_volume_is_where_the_settings_say(compose):
    for name in ("gateway", "ui"):
        service = compose["services"][name]
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
        assert service["environment"]["VLSERVE_INDEX_DIR"] in mounts and mounts["/data/index"] == "index"
    assert "index" in compose["volumes"]


def test_commands_are_real_cli_commands(compose):
    from typer.main import get_command

    from vlserve.cli import app

    cli = get_command(app)
    for name in ("gateway", "ui"):
        command = compose["services"][name]["command"]
        assert command[0] == "vlserve"
        sub = cli.commands[command[1]]  # type: ignore[attr-defined]
        flags = {opt for p in sub.params for opt in p.opts}
        assert {a for a in command[2:] if a.startswith("--")} <= flags, (name, command)


def test_dockerfiles_pin_bases_and_build_with_real_options():
    gpu = (DEPLOY / "docker" / "Dockerfile.gpu").read_text()
    cpu = (DEPLOY / "docker" / "Dockerfile.cpu").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3$", gpu, re.M)
    assert re.search(r"^FROM python:3\.1[1-9]-slim$", cpu, re.M)
    from typer.main import get_command

    from vlserve.cli import app

    build = get_command(app).commands["repo"].commands["build"]  # type: ignore[attr-defined]
    flags = {opt for p in build.params for opt in p.opts}
    used = set(re.findall(r"vlserve repo build (.*)", gpu)[0].replace('"', "").split())
    assert {u for u in used if u.startswith("--")} <= flags
