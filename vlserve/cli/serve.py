"""``vlserve serve`` (tritonserver on a model repository) and ``vlserve repo build``."""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from vlserve.cli import common
from vlserve.errors import InvalidInput, ModelUnavailable

repo_app = typer.Typer(no_args_is_help=True, help="Triton model repositories.")
DetectorOpt = Annotated[str | None, typer.Option(
    "--detector-model", help="detector spec (OWL-ViT / OWLv2) for the Triton detector model (default: "
                             "$VLSERVE_DETECTOR_MODEL; without one the detector is not deployed)")]


@repo_app.command("build")
def build(
    model: Annotated[str, typer.Option("--model", "-m", help="model spec")],
    out: Annotated[Path, typer.Option(help="repository folder (created or added to)")] = Path("model_repository"),
    prefix: Annotated[str, typer.Option(help="model-name prefix, e.g. clip_ (several families side by side)")] = "",
    max_batch_size: Annotated[int, typer.Option()] = 64,
    instances: Annotated[int, typer.Option(help="instances per model")] = 1,
    detector_model: DetectorOpt = None,
    runtime: Annotated[str, typer.Option(help="torch | onnx: the encoders' towers exported to ONNX, served by "
                                              "ensembles with the same model names and tensors")] = "torch",
    tower_backend: Annotated[str, typer.Option(help="with --runtime onnx: onnxruntime (Triton's backend; TensorRT "
                                                    "FP16 on GPUs) | python (the same graphs through onnxruntime in "
                                                    "the python backend, for a tritonserver without the onnxruntime "
                                                    "backend, such as the pip one)")] = "onnxruntime",
) -> None:
    """Write image_encoder, text_encoder and zero_shot_classifier for MODEL into OUT, and the detector
    for the detector spec when one is given (--detector-model or $VLSERVE_DETECTOR_MODEL)."""
    from vlserve.serving.repository import RepoOptions, build_repository

    if max_batch_size < 1 or instances < 1:
        raise InvalidInput("--max-batch-size and --instances must be >= 1")
    detector = detector_model or common.settings().detector_model
    written = build_repository(out, model, prefix, opts=RepoOptions(max_batch_size=max_batch_size,
                                                                    instances=instances), detector_spec=detector,
                               runtime=runtime, tower_backend=tower_backend)
    report = {"repository": str(out), "models": [p.name for p in written], "model_spec": model}
    if runtime != "torch":
        report |= {"runtime": runtime, "tower_backend": tower_backend}
    if detector:
        report["detector_spec"] = detector
    typer.echo(json.dumps(report))


@repo_app.command("export-onnx")
def export_onnx(
    model: Annotated[str, typer.Option("--model", "-m", help="model spec")],
    out: Annotated[Path, typer.Option(help="folder for image_encoder.onnx, text_encoder.onnx and onnx.json")],
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 17,
) -> None:
    """Export MODEL's image and text towers to ONNX (dynamic batch; pixels / token ids in, L2-normalised
    embeddings out), checked by onnx's checker; prints the manifest (spec, fingerprint, opset)."""
    from vlserve.models.onnx_export import export_towers

    encoder = common.load_model(model, device="cpu", precision="fp32")
    typer.echo(json.dumps(export_towers(encoder, out, opset)))


def serve(
    repository: Annotated[Path | None, typer.Option(help="model repository (default: one built for --model)")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="model spec (default: $VLSERVE_MODEL or toy)")]
    = None,
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option()] = 8000,
    grpc_port: Annotated[int, typer.Option()] = 8001,
    metrics_port: Annotated[int, typer.Option()] = 8002,
    gateway_port: Annotated[int | None, typer.Option(help="HTTP gateway port (default: $VLSERVE_GATEWAY_PORT or "
                                                          "8080)")] = None,
    gateway: Annotated[bool, typer.Option("--gateway/--no-gateway", help="also run the HTTP gateway")] = True,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="also run the web UI (needs the gateway)")] = True,
    ui_port: Annotated[int | None, typer.Option(help="web UI port (default: $VLSERVE_UI_PORT or 7860)")] = None,
    toy_index: Annotated[str | None, typer.Option(help="build this index of toy-world images under the index dir "
                                                       "first, unless it exists (make run: toyworld)")] = None,
    ready_timeout: Annotated[float, typer.Option(help="seconds to wait for readiness")] = 300.0,
    detector_model: DetectorOpt = None,
) -> None:
    """Start Triton on a model repository and the HTTP gateway in front of it; print their URLs; run until
    Ctrl-C / SIGTERM, which stops both (as does either one exiting)."""
    from vlserve.serving.launcher import GatewayServer, ManagedProcess, Ports, TritonServer, UIServer
    from vlserve.serving.repository import build_repository

    settings = common.settings()
    if repository is not None and (model is not None or detector_model is not None):
        raise InvalidInput("give --repository or --model / --detector-model, not both")
    if repository is None:
        spec = model or settings.model
        detector = detector_model or settings.detector_model
        key = spec if detector is None else f"{spec}|{detector}"
        repository = settings.cache_dir / "repositories" / hashlib.sha1(key.encode()).hexdigest()[:12]
        build_repository(repository, spec, detector_spec=detector)
    if toy_index is not None:
        ensure_toy_index(settings.index_dir, toy_index, settings.cache_dir)
    triton = TritonServer(repository, Ports(http_port, grpc_port, metrics_port), host, settings.cache_dir)
    servers: list[ManagedProcess] = [triton]
    port = settings.gateway_port if gateway_port is None else gateway_port
    if gateway:
        servers.append(GatewayServer(port, f"{_loopback(host)}:{grpc_port}", host, settings.index_dir.resolve(),
                                     log_file=settings.cache_dir / f"gateway-{port}.log"))
        if ui:
            web_port = settings.ui_port if ui_port is None else ui_port
            web = UIServer(web_port, f"http://{_loopback(host)}:{port}", host, settings.index_dir.resolve(),
                           log_file=settings.cache_dir / f"ui-{web_port}.log")
            servers.append(web)

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    t0 = time.monotonic()
    try:
        for server in servers:
            server.start()
            server.wait_ready(ready_timeout)
        urls = {"http": f"http://{host}:{http_port}", "grpc": f"{host}:{grpc_port}",
                "metrics": f"http://{host}:{metrics_port}/metrics"}
        if gateway:
            urls |= {"gateway": f"http://{host}:{port}", "docs": f"http://{host}:{port}/docs"}
        if gateway and ui:
            urls |= {"ui": web.url}
        typer.echo(json.dumps({"status": "ready", "seconds": round(time.monotonic() - t0, 1),
                               "repository": str(repository), "tritonserver": triton.install.source, **urls,
                               "logs": [str(s.log_file) for s in servers]}))
        sys.stdout.flush()
        while all(s.running for s in servers):
            time.sleep(0.5)
        gone = next(s for s in servers if not s.running)
        code = gone.process.returncode if gone.process else "?"
        raise ModelUnavailable(f"{gone.name} exited with code {code}; log tail:\n{gone.log_tail()}")
    except KeyboardInterrupt:
        typer.echo(json.dumps({"status": "stopping"}))
    finally:
        for server in reversed(servers):
            server.stop()


def _loopback(host: str) -> str:
    """The address to reach a server bound to ``host`` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def ensure_toy_index(index_dir: Path, name: str, cache_dir: Path, n: int = 500) -> None:
    """Index ``n`` toy-world test scenes (with their captions) as ``name``, unless it exists: what
    ``make run`` searches out of the box. Built by the same code as ``vlserve index build``."""
    from vlserve.ingest.pipeline import BuildOptions, build
    from vlserve.retrieval.manifest import MANIFEST
    from vlserve.retrieval.store import index_folder

    if (index_folder(index_dir, name) / MANIFEST).is_file():
        return
    from vlserve.cli.toyworld import export

    source = cache_dir / f"toyworld-test-{n}"
    typer.echo(json.dumps({"status": f"building the {name} index ({n} toy-world images, first start only)"}))
    if not (source / "captions.csv").is_file():
        export(out=source, split="test", n=n, n_novel=0, seed=None, world="v2")
    build(index_dir, name, [str(source / "captions.csv")], BuildOptions(progress=False), model="toy",
          runtime=common.runtime())
