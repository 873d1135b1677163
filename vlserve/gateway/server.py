"""Running the gateway: uvicorn on the settings' host and port, one process, one event loop."""

from __future__ import annotations

from vlserve.settings import Settings


def run(settings: Settings, log_level: str = "info") -> None:
    import uvicorn

    from vlserve.gateway.app import create_app

    config = uvicorn.Config(create_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                            log_level=log_level, access_log=False, timeout_graceful_shutdown=5,
                            server_header=False)
    uvicorn.Server(config).run()
