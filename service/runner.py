"""``lifecycle run``: consumer, relay, projector, read API and daily seal in one process.

SIGTERM / Ctrl-C sets ``stop``: the consumer finishes the batch in hand, the relay its
page, the projector its transaction, and the HTTP server its in-flight requests.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from consumers.inbound import InboundConfig, InboundConsumer
from consumers.relay import Relay, RelayConfig
from lifecycle.application import ProviderLifecycle
from projections.api import create_app
from projections.api import serve as serve_http
from projections.audit import seal_daily
from projections.audit_api import audit_router
from projections.audit_port import AuditStore
from projections.views import open_projector, open_read_model
from service.inbox import resubmit
from service.kafka_admin import ensure_topics
from service.settings import Settings

log = logging.getLogger("lifecycle")


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await ensure_topics(
        settings.kafka_bootstrap,
        {
            settings.inbound_topic: settings.partitions,
            settings.outbound_topic: settings.partitions,
            settings.refused_topic: settings.partitions,
            settings.dlq_topic: settings.partitions,
        },
    )
    env = settings.persistence_env()
    consumer = InboundConsumer(
        ProviderLifecycle(env=env),
        InboundConfig(
            settings.kafka_bootstrap,
            settings.inbound_topic,
            settings.group_id,
            settings.batch_size,
        ),
    )
    relay = Relay(
        ProviderLifecycle(env=env),
        RelayConfig(
            settings.kafka_bootstrap,
            settings.outbound_topic,
            settings.refused_topic,
            settings.dlq_topic,
        ),
    )
    read_model = open_read_model(settings.store, app=ProviderLifecycle(env=env))
    auditing = ProviderLifecycle(env=env)
    api = create_app(
        read_model,
        lambda: ProviderLifecycle(env=env),
        settings,
        resubmit=lambda lifecycle, records, by: resubmit(lifecycle, settings, records, by),
        extra_routers=[audit_router(lambda: auditing)],
    )
    projector = open_projector(settings.store, app=ProviderLifecycle(env=env))
    log.info("consuming %s on %s", settings.inbound_topic, settings.kafka_bootstrap)
    log.info("read API and dashboard on http://%s/", settings.http_bind)
    tasks = [
        asyncio.create_task(consumer.run(stop), name="inbound"),
        asyncio.create_task(relay.run(stop), name="relay"),
        asyncio.create_task(projector.run(stop), name="projector"),
        asyncio.create_task(serve_http(api, settings.http_bind, stop), name="http"),
    ]
    if isinstance(auditing.recorder, AuditStore):
        # Each business day's seal (verify, then a Merkle root over every stream's head).
        tasks.append(asyncio.create_task(seal_daily(auditing.recorder, stop), name="sealer"))
    _done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    log.info("stopped cleanly")
