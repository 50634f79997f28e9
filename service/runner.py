"""``lifecycle run``: the consumer and the relay in one process, stopped by SIGTERM/Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal

from consumers.inbound import InboundConfig, InboundConsumer
from consumers.relay import Relay, RelayConfig
from lifecycle.application import ProviderLifecycle
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
    log.info("consuming %s on %s", settings.inbound_topic, settings.kafka_bootstrap)
    tasks = [
        asyncio.create_task(consumer.run(stop), name="inbound"),
        asyncio.create_task(relay.run(stop), name="relay"),
    ]
    _done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    log.info("stopped cleanly")
