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


# ---- the Helm chart: no renderer here (no helm binary), so the values-to-manifest mapping is checked --
CHART = DEPLOY / "helm" / "vlserve"


@pytest.fixture(scope="module")
def chart() -> tuple[dict[str, Any], str]:
    values = dict(yaml.safe_load((CHART / "values.yaml").read_text()))
    templates = "\n".join(p.read_text() for p in sorted((CHART / "templates").glob("*")))
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["apiVersion"] == "v2"
    return values, templates


def test_every_value_a_template_reads_exists(chart):
    values, templates = chart
    for path in set(re.findall(r"\.Values((?:\.[A-Za-z_]+)+)", templates)):
        node: Any = values
        for key in path.strip(".").split("."):
            assert isinstance(node, dict) and key in node, f".Values{path} is not in values.yaml"
            node = node[key]


def test_chart_ports_agree_with_vlserve_and_compose(chart, compose):
    values, _ = chart
    s = Settings()
    assert values["gateway"]["port"] == s.gateway_port and values["ui"]["port"] == s.ui_port
    triton = compose["services"]["triton"]["command"]
    for name in ("http", "grpc", "metrics"):
        assert f"--{name}-port={values['triton']['ports'][name]}" in triton
    assert values["index"]["mountPath"] == compose["services"]["gateway"]["environment"]["VLSERVE_INDEX_DIR"]


def test_chart_settings_probes_and_flags_are_real(chart):
    _, templates = chart
    fields = set(Settings.model_fields)
    for var in set(re.findall(r"\bVLSERVE_[A-Z_]+", templates)):
        assert var.removeprefix("VLSERVE_").lower() in fields, var
    from vlserve.gateway.app import create_app
    from vlserve.serving.launcher import UIServer

    gateway_paths = set(create_app(Settings()).openapi()["paths"])
    probes = set(re.findall(r"httpGet: \{path: (/[\w/]+)", templates))
    assert probes == {"/v2/health/ready", "/v2/health/live", "/readyz", "/healthz", UIServer.probe}
    assert {"/readyz", "/healthz"} <= gateway_paths and "/metrics" in gateway_paths
    from typer.main import get_command

    from vlserve.cli import app

    cli = get_command(app)
    for sub, args in re.findall(r'args: \["vlserve", "(\w+)", (.*?)\]', templates, re.S):
        flags = {opt for p in cli.commands[sub].params for opt in p.opts}  # type: ignore[attr-defined]
        assert set(re.findall(r'"(--[\w-]+)"', args)) <= flags, (sub, args)


def test_chart_api_key_file_is_where_the_secret_is_mounted(chart):
    _, templates = chart
    env = re.search(r"VLSERVE_API_KEYS_FILE\n\s+value: (/[\w/]+)/\{\{", templates)
    mount = re.search(r"name: api-keys, mountPath: (/[\w/]+),", templates)
    assert env and mount and env.group(1) == mount.group(1)


def test_ray_cluster_config_matches_the_images_and_the_cli(chart):
    values, _ = chart
    text = (DEPLOY / "ray" / "raycluster.yaml").read_text()
    ray = yaml.safe_load(text)
    assert ray["kind"] == "RayCluster" and ray["apiVersion"] == "ray.io/v1"
    head = ray["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    worker = ray["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert head["image"] == f"{values['images']['app']['repository']}:{values['images']['app']['tag']}"
    assert worker["image"] == f"{values['images']['triton']['repository']}:{values['images']['triton']['tag']}"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    client = next(p["containerPort"] for p in head["ports"] if p["name"] == "client")
    usage = re.search(r"#\s+vlserve index build (.*?)\n(?!#\s+-)", text.replace("\\\n#", ""), re.S)
    assert usage and f":{client}" in usage.group(1)
    from typer.main import get_command

    from vlserve.cli import app

    build = get_command(app).commands["index"].commands["build"]  # type: ignore[attr-defined]
    flags = {opt for p in build.params for opt in p.opts}
    assert set(re.findall(r"(--[\w-]+)", usage.group(1))) <= flags
