"""Serving the app with uvicorn inside ``lifecycle run`` (its signals, its stop event)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from fastapi import FastAPI

log = logging.getLogger("lifecycle.api")


def bind_address(bind: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8000`` for IPv6) → (host, port)."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"LIFECYCLE_HTTP_BIND must be host:port, not {bind!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(app: FastAPI, bind: str, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``bind`` until ``stop`` is set (for ``lifecycle run``).

    The caller owns SIGTERM/SIGINT (it sets ``stop``); uvicorn's own signal handling is
    off. The socket is bound here first, so a taken port raises ``OSError`` (uvicorn would
    call ``sys.exit``). In-flight requests are finished before this returns.
    """
    import uvicorn

    host, port = bind_address(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    config = uvicorn.Config(
        app, access_log=False, log_level="warning", lifespan="off", timeout_graceful_shutdown=10
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    log.info("read API and dashboard on http://%s:%d/", host, port)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        try:
            await serving
        finally:
            sock.close()
