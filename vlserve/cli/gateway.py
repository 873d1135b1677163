"""``vlserve gateway`` (the HTTP gateway in front of a running Triton) and ``vlserve openapi``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vlserve.cli import common


def gateway_settings(host: str | None = None, port: int | None = None, triton_url: str | None = None,
                     index_dir: Path | None = None) -> Any:
    """The settings, with the options given taking precedence."""
    updates = {k: v for k, v in {"gateway_host": host, "gateway_port": port, "triton_url": triton_url,
                                 "index_dir": index_dir}.items() if v is not None}
    return common.settings().model_copy(update=updates)


def gateway(
    host: Annotated[str | None, typer.Option(help="address to bind (default: $VLSERVE_GATEWAY_HOST or 127.0.0.1)")]
    = None,
    port: Annotated[int | None, typer.Option(help="port (default: $VLSERVE_GATEWAY_PORT or 8080)")] = None,
    triton_url: Annotated[str | None, typer.Option(help="Triton's gRPC host:port (default: $VLSERVE_TRITON_URL or "
                                                        "127.0.0.1:8001)")] = None,
    index_dir: Annotated[Path | None, typer.Option(help="indexes to serve (default: $VLSERVE_INDEX_DIR or ./index)")]
    = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the HTTP gateway in front of a running Triton (`vlserve serve` starts both)."""
    from vlserve.gateway.server import run

    run(gateway_settings(host, port, triton_url, index_dir), log_level)


def openapi(
    out: Annotated[Path | None, typer.Option(help="write here (default: stdout)")] = None,
) -> None:
    """The gateway's OpenAPI document (docs/openapi.json is this, committed; a test fails when they differ)."""
    from vlserve.gateway.app import create_app
    from vlserve.settings import Settings

    text = json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
