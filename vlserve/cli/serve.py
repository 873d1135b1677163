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
) -> None:
    """Write image_encoder, text_encoder and zero_shot_classifier for MODEL into OUT, and the detector
    for the detector spec when one is given (--detector-model or $VLSERVE_DETECTOR_MODEL)."""
    from vlserve.serving.repository import RepoOptions, build_repository

    if max_batch_size < 1 or instances < 1:
        raise InvalidInput("--max-batch-size and --instances must be >= 1")
    detector = detector_model or common.settings().detector_model
    written = build_repository(out, model, prefix, opts=RepoOptions(max_batch_size=max_batch_size,
                                                                    instances=instances), detector_spec=detector)
    report = {"repository": str(out), "models": [p.name for p in written], "model_spec": model}
    if detector:
        report["detector_spec"] = detector
    typer.echo(json.dumps(report))


def serve(
    repository: Annotated[Path | None, typer.Option(help="model repository (default: one built for --model)")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="model spec (default: $VLSERVE_MODEL or toy)")]
    = None,
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option()] = 8000,
    grpc_port: Annotated[int, typer.Option()] = 8001,
    metrics_port: Annotated[int, typer.Option()] = 8002,
    ready_timeout: Annotated[float, typer.Option(help="seconds to wait for readiness")] = 300.0,
    detector_model: DetectorOpt = None,
) -> None:
    """Start tritonserver on a model repository, wait until ready, run until Ctrl-C / SIGTERM."""
    from vlserve.serving.launcher import Ports, TritonServer
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
    server = TritonServer(repository, Ports(http_port, grpc_port, metrics_port), host, settings.cache_dir)

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    t0 = time.monotonic()
    server.start()
    try:
        server.wait_ready(ready_timeout)
        typer.echo(json.dumps({"status": "ready", "seconds": round(time.monotonic() - t0, 1),
                               "repository": str(repository), "tritonserver": server.install.source,
                               "http": f"http://{host}:{http_port}", "grpc": f"{host}:{grpc_port}",
                               "metrics": f"http://{host}:{metrics_port}/metrics", "log": str(server.log_file)}))
        sys.stdout.flush()
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        raise ModelUnavailable(f"tritonserver exited with code {server.process.returncode if server.process else '?'}; "
                           f"log tail:\n{server.log_tail()}")
    except KeyboardInterrupt:
        typer.echo(json.dumps({"status": "stopping"}))
    finally:
        server.stop()
