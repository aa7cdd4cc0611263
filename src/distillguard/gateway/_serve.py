"""Run the gateway under uvicorn (one worker; run replicas behind a balancer with --redis)."""

from __future__ import annotations

import logging

from distillguard.gateway._config import GatewayConfig


def serve(config: GatewayConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", fast_path: bool = True) -> None:
    """Serve until SIGINT/SIGTERM; shutdown flushes the capture queue before exiting."""
    import uvicorn

    from distillguard.gateway._app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config, fast_path=fast_path)
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=False, loop=loop,
        http="httptools", timeout_graceful_shutdown=10, server_header=False,
    )
