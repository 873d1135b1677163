"""deploy/ stays in step with the code: the compose file parses, its ports, setting names, commands,
health endpoints and service wiring agree with vlserve's settings, CLI and routes (a test fails on
drift), and the Dockerfiles pin their base images and run commands that exist. The Milvus parts (the
compose profile, the chart's dependency and token Secret, the build commands of the README and the Ray
example) are held to the same: the services exist, the token variable is the one the settings read,
and every documented `vlserve index build` uses real flags and a URI that names the server."""

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


def profile(compose: dict[str, Any], name: str | None) -> set[str]:
    """The services a profile adds (None: the default stack, services without profiles)."""
    return {k for k, v in compose["services"].items() if (name in v.get("profiles", []) if name else
                                                          not v.get("profiles"))}


def test_services_and_their_images(compose):
    assert profile(compose, None) == {"triton", "gateway", "ui"}
    assert profile(compose, "milvus") == {"etcd", "minio", "milvus"}
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


def index_build_flags() -> set[str]:
    from typer.main import get_command

    from vlserve.cli import app

    build = get_command(app).commands["index"].commands["build"]  # type: ignore[attr-defined]
    return {opt for p in build.params for opt in p.opts}


def test_milvus_profile_is_a_standalone_server(compose):
    services = compose["services"]
    milvus, etcd, minio = services["milvus"], services["etcd"], services["minio"]
    assert re.fullmatch(r"milvusdb/milvus:v2\.\d+\.\d+", milvus["image"])
    assert etcd["image"].startswith("quay.io/coreos/etcd:v3.") and minio["image"].startswith("minio/minio:")
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert "http://localhost:9091/healthz" in milvus["healthcheck"]["test"]
    assert milvus["environment"]["ETCD_ENDPOINTS"] == "etcd:2379" and "-listen-client-urls=http://0.0.0.0:2379" in \
        etcd["command"]
    assert milvus["environment"]["MINIO_ADDRESS"] == "minio:9000" and "/minio/health/live" in \
        " ".join(minio["healthcheck"]["test"])
    assert set(milvus["depends_on"]) == {"etcd", "minio"} and "127.0.0.1:19530:19530" in milvus["ports"]
    for service in (milvus, etcd, minio):  # data on named volumes, declared
        for mount in service["volumes"]:
            assert mount.split(":")[0] in compose["volumes"], mount


def test_gateway_waits_for_milvus_only_with_the_profile(compose):
    services = compose["services"]
    assert services["gateway"]["depends_on"]["milvus"] == {"condition": "service_healthy", "required": False}
    # the default stack depends on no profiled service it would require
    for name in profile(compose, None):
        for dep, how in services[name].get("depends_on", {}).items():
            assert dep in profile(compose, None) or how.get("required") is False, (name, dep)


def test_the_milvus_token_variable_is_the_one_the_settings_read(compose, monkeypatch):
    for name in ("gateway", "ui"):  # the UI's build and remove jobs run `vlserve index` too
        assert compose["services"][name]["environment"]["VLSERVE_MILVUS_TOKEN"] == "${VLSERVE_MILVUS_TOKEN:-}"
    monkeypatch.setenv("VLSERVE_MILVUS_TOKEN", "root:secret")
    token = Settings().milvus_token
    assert token is not None and token.get_secret_value() == "root:secret"
    monkeypatch.setenv("VLSERVE_MILVUS_TOKEN", "")  # compose's default when unset: no token sent
    assert not (Settings().milvus_token or "")


def documented_builds(text: str) -> list[str]:
    """Every `vlserve index build ...` of a README or a comment, continuation lines joined."""
    joined = re.sub(r"\\\n#?\s*", " ", text)
    return re.findall(r"vlserve index build ([^\n`]*)", joined)


def test_readme_builds_a_milvus_index_the_gateway_can_reach(compose):
    readme = (DEPLOY / "README.md").read_text()
    builds = [b for b in documented_builds(readme) if "--backend milvus" in b]
    assert len(builds) == 2  # compose, helm
    flags = index_build_flags()
    for build in builds:
        assert {a for a in build.split() if a.startswith("--")} <= flags, build
    compose_build = next(b for b in builds if "http://milvus:" in b)
    port = option(compose_build.split(), "--uri").rsplit(":", 1)[1]
    assert any(p.endswith(f":{port}:{port}") for p in compose["services"]["milvus"]["ports"])
    model = option(compose_build.split(), "--model")
    assert model == compose["services"]["gateway"]["environment"]["VLSERVE_MODEL"]
    assert "--profile milvus up" in readme and "helm dependency update deploy/helm/vlserve" in readme
    from vlserve.retrieval.store import BACKENDS

    assert "milvus" in BACKENDS


def test_the_app_image_can_talk_to_milvus():
    import tomllib

    cpu = (DEPLOY / "docker" / "Dockerfile.cpu").read_text()
    extras = re.search(r'pip install "\.\[([\w,]+)\]"', cpu)
    assert extras and "milvus" in extras.group(1).split(",")
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    assert set(extras.group(1).split(",")) <= set(project["optional-dependencies"])
    assert any(d.startswith("pymilvus") for d in project["optional-dependencies"]["milvus"])


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


def test_chart_declares_milvus_as_an_optional_dependency(chart):
    values, _ = chart
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (dep,) = [d for d in meta["dependencies"] if d["name"] == "milvus"]
    assert dep["condition"] == "milvus.enabled" and values["milvus"]["enabled"] is False
    assert dep["repository"].rstrip("/") == "https://zilliztech.github.io/milvus-helm"
    assert re.fullmatch(r"\d+\.\d+\.\d+", dep["version"])  # pinned
    milvus = values["milvus"]  # standalone, as the chart's README installs it
    assert milvus["cluster"]["enabled"] is False and milvus["etcd"]["replicaCount"] == 1
    assert milvus["minio"]["mode"] == "standalone" and milvus["pulsarv3"]["enabled"] is False
    assert "charts/" in (DEPLOY.parent / ".gitignore").read_text()  # fetched by `helm dependency update`


def test_chart_milvus_token_comes_from_a_secret(chart):
    values, templates = chart
    assert set(values["milvusToken"]) == {"existingSecret", "key"} and values["milvusToken"]["existingSecret"] == ""
    helper = re.search(r'define "vlserve\.milvusTokenEnv".*?end -\}\}', templates, re.S)
    assert helper and "if .Values.milvusToken.existingSecret" in helper.group(0)
    assert re.search(r"name: VLSERVE_MILVUS_TOKEN\n\s+valueFrom:\n\s+secretKeyRef: \{name: \{\{ "
                     r"\.Values\.milvusToken\.existingSecret \}\}, key: \{\{ \.Values\.milvusToken\.key \}\}\}",
                     helper.group(0))
    for name in ("gateway", "ui"):
        assert 'include "vlserve.milvusTokenEnv"' in (CHART / "templates" / f"{name}.yaml").read_text(), name


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
    usages = documented_builds(text)
    assert len(usages) == 2 and "--backend milvus" in usages[1]  # FAISS, then the Milvus variant
    flags = index_build_flags()
    for usage in usages:
        assert f":{client}" in usage and set(re.findall(r"(--[\w-]+)", usage)) <= flags
    uri = option(usages[1].split(), "--uri")  # the chart's Milvus Service, RELEASE-milvus:PORT
    assert re.fullmatch(r"http://[a-z0-9-]+-milvus:19530", uri)
