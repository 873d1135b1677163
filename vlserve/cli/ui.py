"""``vlserve ui``: the Gradio front end, in front of a running gateway (``vlserve serve`` starts it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from vlserve.cli import common


def ui(
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="port (default: $VLSERVE_UI_PORT or 7860)")] = None,
    gateway_url: Annotated[str | None, typer.Option(help="the gateway to call (default: $VLSERVE_UI_GATEWAY_URL or "
                                                         "http://127.0.0.1:$VLSERVE_GATEWAY_PORT)")] = None,
    index_dir: Annotated[Path | None, typer.Option(help="where the Index tab builds indexes (default: "
                                                        "$VLSERVE_INDEX_DIR or ./index; the gateway's)")] = None,
) -> None:
    """Run the web UI (Search, Classify, Detect, Segment, Index, Evaluate) against the HTTP gateway."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vlserve.ui.app import CSS, build_ui

    settings = common.settings()
    url = gateway_url or settings.ui_gateway_url or f"http://127.0.0.1:{settings.gateway_port}"
    blocks = build_ui(url, settings.ui_key(), (index_dir or settings.index_dir).resolve(),
                      settings.cache_dir / "ui-examples")
    blocks.queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=settings.ui_port if port is None else port, show_error=False,
        css=CSS, footer_links=[], quiet=True, ssr_mode=False, pwa=False, mcp_server=False)
