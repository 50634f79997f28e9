"""``lifecycle run``: consumer, relay, projector, read API and daily seal in one process.

SIGTERM / Ctrl-C sets ``stop``: the consumer finishes the batch in hand, the relay its
page, the projector its transaction, and the HTTP server its in-flight requests.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from audit.seal import seal_daily
from consumers.broker import start_broker
from consumers.topics import ensure_service_topics
from service.bootstrap import Bootstrap
from service.settings import Settings
from web.server import serve as serve_http

log = logging.getLogger("lifecycle")


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def topics() -> None:
        # The topics published to have room for a maximal inbound record plus the service's
        # headers (a dead letter is the original record with ``x-error`` and ``x-original-*``).
        await ensure_service_topics(
            settings.kafka_bootstrap,
            inbound=settings.inbound_topic,
            outbound=settings.outbound_topic,
            refused=settings.refused_topic,
            dlq=settings.dlq_topic,
            partitions=settings.partitions,
        )

    with Bootstrap(settings) as deps:
        log.info("consuming %s on %s", settings.inbound_topic, settings.kafka_bootstrap)
        log.info("read API and dashboard on http://%s/", settings.http_bind)
        tasks = [
            asyncio.create_task(deps.consumer.run(stop), name="inbound"),
            asyncio.create_task(deps.relay.run(stop), name="relay"),
            asyncio.create_task(deps.projector.run(stop), name="projector"),
            asyncio.create_task(serve_http(deps.api, settings.http_bind, stop), name="http"),
        ]
        if deps.audit_store is not None:
            # Each business day's seal (verify, then a Merkle root over every stream's head).
            tasks.append(asyncio.create_task(seal_daily(deps.audit_store, stop), name="sealer"))

        # The broker, once its subscribers are declared: a Kafka not there is waited out.
        async def kafka() -> None:
            await start_broker(deps.broker, stop, before=topics)

        tasks.append(asyncio.create_task(kafka(), name="kafka"))
        try:
            _done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await deps.broker.stop()  # the batch in hand first (graceful_timeout)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    log.info("stopped cleanly")
