"""Read API latency: ``GET /v1/providers/{uscc}`` at a steady rate over 20,000 providers.

Run with ``make bench-api`` or ``.venv/bin/python -m bench.api`` (``--store postgres`` needs
the local PostgreSQL from ``deploy/local/services.sh start``). One run:

1. generates the demo stream for 20,000 providers (``service.demo``, ≈ 80,000 records:
   every outcome, several tenures) and feeds it to ``ProviderLifecycle.process`` in
   batches of 5,000 on a fresh store (a SQLite file by default, or a fresh PostgreSQL
   database), then lets the projector catch up (not timed against the floor);
2. serves ``web.app.create_app`` over ``projections.views.open_read_model`` with
   uvicorn in a **subprocess** (as ``lifecycle run`` would: one process, access log off);
3. from this process, sends ``GET /v1/providers/{uscc}`` for random known USCCs as a reader
   (contacts masked) at a steady rate, **open loop**: request *i* is sent at
   ``t0 + i / rate`` whether or not earlier ones have been answered, over keep-alive
   connections (a new one whenever none is idle), and its latency is measured from that
   scheduled time to the end of the response, so a stall is charged to every request it
   delays (no coordinated omission). A warm-up (not counted) precedes the measured window;
4. stops the server, removes the store.

The last line is ``api: p50 X ms, p99 Y ms @ 300 rps``. Exit status 1 if any request
failed or p99 is above the floor (``--floor-ms``, 25 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psycopg

ADMIN_URL = "postgresql://lifecycle:lifecycle@127.0.0.1:5432/lifecycle"
BENCH_DB = "lifecycle_bench_api"
TOKEN = "bench-reader-token"


# --- the data -----------------------------------------------------------------------------


def load(store: str, providers: int, seed: int, batch: int) -> list[str]:
    """Feed the demo stream through the application service, project it; the USCCs."""
    from lifecycle.application import InboundMessage, ProviderLifecycle
    from projections.model import ProviderFilter
    from projections.views import open_projector, open_read_model
    from service.demo import generate
    from store.url import persistence_env

    started = time.perf_counter()
    lines = list(generate(providers=providers, seed=seed))
    print(f"  generated {len(lines):,} records for {providers:,} providers", flush=True)
    app = ProviderLifecycle(env=persistence_env(store))
    for start in range(0, len(lines), batch):
        chunk = lines[start : start + batch]
        app.process(
            [InboundMessage(raw, f"bench:0:{n}") for n, raw in enumerate(chunk, start=start)]
        )
    app.close()
    recorded = time.perf_counter()
    print(f"  recorded in {recorded - started:.1f} s", flush=True)
    projector = open_projector(store, batch_size=batch)
    projected = projector.catch_up()
    projector.close()
    print(
        f"  projected {projected:,} notifications in {time.perf_counter() - recorded:.1f} s",
        flush=True,
    )
    read_model = open_read_model(store)
    usccs: list[str] = []
    while True:
        page = read_model.providers(ProviderFilter(), offset=len(usccs), limit=2000)
        usccs.extend(item["uscc"] for item in page.items)
        if not page.items or len(usccs) >= page.total:
            break
    read_model.close()
    return usccs


def recreate_database(admin_url: str, db: str, drop_only: bool = False) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{db}"')


# --- the server (a subprocess) --------------------------------------------------------------


@dataclass(frozen=True)
class _ServeSettings:
    api_tokens: str
    kafka_bootstrap: str = "127.0.0.1:9092"


def serve(store: str, port: int) -> None:
    """The child: the real app over the real views, on 127.0.0.1:port."""
    import uvicorn

    from lifecycle.application import ProviderLifecycle
    from lifecycle.inbox import Inbox
    from projections.views import open_read_model
    from store.url import persistence_env
    from web.app import create_app

    def no_resubmit(*_: object) -> int:
        raise RuntimeError("the benchmark does not re-submit")

    app = create_app(
        open_read_model(store),
        lambda: Inbox(ProviderLifecycle(env=persistence_env(store)), no_resubmit),
        _ServeSettings(api_tokens=f"reader:{TOKEN}"),
    )
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not answer /healthz")


# --- the load (this process) ------------------------------------------------------------------


@dataclass
class Load:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    late_sends: int = 0
    connections: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for header in head.split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def open_loop(
    port: int, usccs: Sequence[str], rate: float, seconds: float, warmup: float, seed: int
) -> Load:
    """Send at ``rate`` per second for ``warmup + seconds``; measure the last ``seconds``."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    # Idle keep-alive connections, with when each was last used; uvicorn closes one after
    # 5 s without a request, so a connection idle for 2 s is not used again.
    idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
    load = Load()
    total = int(rate * (warmup + seconds))
    measured_from = int(rate * warmup)

    async def one(index: int, scheduled: float, uscc: str) -> None:
        request = (
            f"GET /v1/providers/{uscc} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nAccept: application/json\r\n\r\n"
        ).encode()
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while idle:
            used, reader, writer = idle.pop()
            if loop.time() - used < 2.0:
                connection = reader, writer
                break
            writer.close()
        if connection is None:
            try:
                connection = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                load.error("connect")
                return
            load.connections += 1
        try:
            status = await asyncio.wait_for(_exchange(*connection, request), timeout=10)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            load.error("transport")
            connection[1].close()
            return
        finished = loop.time()
        idle.append((finished, *connection))
        if status != 200:
            load.error(f"http {status}")
        elif index >= measured_from:
            load.latencies_ms.append((finished - scheduled) * 1000)

    tasks: list[asyncio.Task[None]] = []
    start = loop.time() + 0.05
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            load.late_sends += 1
        tasks.append(asyncio.create_task(one(index, scheduled, rng.choice(usccs))))
    await asyncio.gather(*tasks)
    for _, _, writer in idle:
        writer.close()
    return load


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


# --- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    admin_url = os.environ.get("LIFECYCLE_STORE", "")
    if not admin_url.startswith("postgresql://"):
        admin_url = ADMIN_URL
    if args.store == "postgres":
        recreate_database(admin_url, BENCH_DB)
        store = urlparse(admin_url)._replace(path=f"/{BENCH_DB}").geturl()
    else:
        store = f"sqlite:///{tmp}/store.db"
    server: subprocess.Popen[bytes] | None = None
    try:
        print(f"api bench: {args.providers:,} providers on {args.store}", flush=True)
        usccs = load(store, args.providers, args.seed, args.batch)
        print(f"  {len(usccs):,} providers readable", flush=True)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.api", "--serve", store, "--port", str(port)],
            env={k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")},
        )
        wait_healthy(port, server)
        print(
            f"  serving on 127.0.0.1:{port} (pid {server.pid}); {args.rate:g} req/s for "
            f"{args.warmup:g} s warm-up + {args.seconds:g} s measured, open loop",
            flush=True,
        )
        load_ = asyncio.run(open_loop(port, usccs, args.rate, args.seconds, args.warmup, args.seed))
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        if args.store == "postgres":
            with contextlib.suppress(Exception):
                recreate_database(admin_url, BENCH_DB, drop_only=True)
        shutil.rmtree(tmp, ignore_errors=True)

    values = sorted(load_.latencies_ms)
    p50, p90, p99 = (percentile(values, q) for q in (0.50, 0.90, 0.99))
    worst = values[-1] if values else math.nan
    achieved = len(values) / args.seconds
    print(
        f"  {len(values):,} measured responses ({achieved:.0f}/s), p90 {p90:.2f} ms, "
        f"max {worst:.2f} ms; {load_.connections} connections; "
        f"{load_.late_sends} sends >5 ms late; errors: {load_.errors or 'none'}"
    )
    ok = not load_.errors and p99 <= args.floor_ms
    print(f"floor p99 <= {args.floor_ms:g} ms: {'meets' if ok else 'BELOW'}")
    sys.stdout.flush()
    print(f"api: p50 {p50:.2f} ms, p99 {p99:.2f} ms @ {args.rate:g} rps")
    return 0 if ok else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    p.add_argument("--providers", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=300.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds sent but not measured")
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--batch", type=int, default=5000, help="records per process() call")
    p.add_argument("--floor-ms", type=float, default=25.0, help="p99 floor")
    p.add_argument("--serve", metavar="STORE", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.port)
    else:
        sys.exit(run(arguments))
