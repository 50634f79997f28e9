"""``lifecycle run``: the roles of this process (``service/roles.py``) until SIGTERM.

``ingest`` (the inbound consumer), ``relay``, ``project`` (the projector and the daily seal)
and ``api`` (the read API and the dashboard); by default all four. Each role runs under a
:class:`~service.roles.Supervisor` (a failure restarts it with backoff, never the process);
``relay`` and ``project`` run only while this process holds their lease
(:mod:`store.lease`). On SQLite the process first takes the store's file lock: a second
``lifecycle run`` on the same file raises :class:`~store.lease.StoreInUse`.

SIGTERM / Ctrl-C sets ``stop``: the consumer finishes the batch in hand, the relay its
page, the projector its transaction, and the HTTP server its in-flight requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

from audit.seal import seal_daily
from consumers.topics import ensure_service_topics
from service.bootstrap import Bootstrap
from service.roles import LEASED, Body, RoleBoard, Supervisor, parse_roles, run_leased
from service.settings import Settings
from store.lease import Lease, StoreFileLock, open_lease, sqlite_path
from web.server import serve as serve_http

log = logging.getLogger("lifecycle")


@contextlib.contextmanager
def store_lock(store: str) -> Iterator[None]:
    """On SQLite, the store's file lock for the whole process (else nothing)."""
    path = sqlite_path(store)
    if path is None:
        yield
        return
    with StoreFileLock(path):
        yield


def _fresh(deps: Bootstrap, name: str) -> None:
    """Forget a built dependency so that a restarted role gets a new one."""
    deps.__dict__.pop(name, None)


def role_bodies(deps: Bootstrap) -> dict[str, Body]:
    """What each role runs (one attempt; the supervisor restarts it)."""
    settings = deps.settings

    async def ingest(stop: asyncio.Event) -> None:
        _fresh(deps, "consumer")
        await deps.consumer.run(stop)

    async def relay(stop: asyncio.Event) -> None:
        _fresh(deps, "relay")
        await deps.relay.run(stop)

    async def project(stop: asyncio.Event) -> None:
        work = [asyncio.ensure_future(deps.projector.run(stop))]
        if deps.audit_store is not None:
            # Each business day's seal (verify, then a Merkle root over every stream's head).
            work.append(asyncio.ensure_future(seal_daily(deps.audit_store, stop)))
        try:
            await asyncio.gather(*work)
        finally:
            for task in work:
                task.cancel()
            await asyncio.gather(*work, return_exceptions=True)

    async def api(stop: asyncio.Event) -> None:
        await serve_http(deps.api, settings.http_bind, stop)

    return {"ingest": ingest, "relay": relay, "project": project, "api": api}


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    lease_factory: Callable[[str, str], Lease] = open_lease,
) -> None:
    roles = parse_roles(settings.roles)
    stop = stop or asyncio.Event()
    with store_lock(settings.store):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if "ingest" in roles or "relay" in roles:
            await _ensure_topics(settings, stop)
        board = RoleBoard(roles)
        with Bootstrap(settings) as deps:
            deps.role_board = board
            bodies = role_bodies(deps)
            log.info("roles: %s", ",".join(roles))
            if "ingest" in roles:
                log.info("consuming %s on %s", settings.inbound_topic, settings.kafka_bootstrap)
            if "api" in roles:
                log.info("read API and dashboard on http://%s/", settings.http_bind)
            tasks = []
            for role in roles:
                if role in LEASED:
                    work = run_leased(
                        role, lease_factory(settings.store, role), bodies[role], board, stop
                    )
                else:
                    work = Supervisor(role, bodies[role], board).run(stop)
                tasks.append(asyncio.create_task(work, name=role))
            await asyncio.gather(*tasks)
    log.info("stopped cleanly")


async def _ensure_topics(settings: Settings, stop: asyncio.Event) -> None:
    """The topics published to have room for a maximal inbound record plus the service's
    headers (a dead letter is the original record with ``x-error`` and ``x-original-*``).
    Kafka not up yet is waited for (with backoff), not a reason to exit."""

    async def ensure(_stop: asyncio.Event) -> None:
        await ensure_service_topics(
            settings.kafka_bootstrap,
            inbound=settings.inbound_topic,
            outbound=settings.outbound_topic,
            refused=settings.refused_topic,
            dlq=settings.dlq_topic,
            partitions=settings.partitions,
        )
        _stop.set()

    done = asyncio.Event()
    linked = asyncio.ensure_future(_link(stop, done))
    try:
        await Supervisor("topics", ensure).run(done)
    finally:
        linked.cancel()


async def _link(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
