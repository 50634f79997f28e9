"""Topic set-up for the local stack and the demo (production topics are provisioned).

A dead letter is the original record plus headers (``x-error`` of at most 1 KiB and the
``x-original-*`` ones), and an outbound or refused record is the inbound event plus the
service's attributes: so the topics the service publishes to are created with room for a
maximal inbound record plus :data:`HEADROOM` (``max.message.bytes``; Kafka's default is
about 1 MB, ARCHITECTURE.md, "Traps"). Topics that exist already are left as they are (a
warning says when one has less room).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

log = logging.getLogger(__name__)

#: Kafka's default ``message.max.bytes`` (a topic's ``max.message.bytes`` when not set).
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588

#: Room for what the service adds to an inbound record: the dead-letter headers (``x-error``
#: at most 1 KiB, the original topic, partition and offset) or the outbound and refused
#: envelopes (sequence, recordedtime, codes, reason), with a wide margin.
HEADROOM = 64 * 1024

_MAX_MESSAGE_BYTES = "max.message.bytes"
_TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the missing topics (name → partitions), replication factor 1, each with its
    ``configs`` (name → {config: value}) when given."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=1,
                topic_configs=dict((configs or {}).get(name, {})),
            )
            for name, partitions in topics.items()
            if name not in existing
        ]
        if missing:
            try:
                response = await admin.create_topics(missing)
            except Exception as exc:  # created concurrently by another process
                if "TopicAlreadyExists" not in type(exc).__name__ + str(exc):
                    raise
            else:
                for topic, code, message in _topic_errors(response):
                    if code not in (0, _TOPIC_ALREADY_EXISTS):
                        raise RuntimeError(f"cannot create topic {topic}: {code} {message}")
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", None) or []
    out = []
    for entry in errors:
        topic, code = entry[0], int(entry[1])
        message = entry[2] if len(entry) > 2 else None
        out.append((str(topic), code, message))
    return out


async def topic_limits(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """Each topic's ``max.message.bytes`` (Kafka's default for one that does not exist yet:
    it will be created with the broker's)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, {_MAX_MESSAGE_BYTES: None})
                for name in dict.fromkeys(topics)
            ]
        )
    finally:
        await admin.close()
    limits = dict.fromkeys(topics, DEFAULT_MAX_MESSAGE_BYTES)
    for response in responses:
        for resource in response.to_object().get("resources", []):
            if resource.get("error_code"):
                continue
            for entry in resource.get("config_entries", []):
                if entry.get("config_names") == _MAX_MESSAGE_BYTES and entry.get("config_value"):
                    limits[resource["resource_name"]] = int(entry["config_value"])
    return limits


async def ensure_service_topics(
    bootstrap: str,
    *,
    inbound: str,
    outbound: str,
    refused: str,
    dlq: str,
    partitions: int,
) -> dict[str, int]:
    """The inbound topic, then the topics the service publishes to, each with room for a
    maximal inbound record plus :data:`HEADROOM`; every topic's ``max.message.bytes``."""
    await ensure_topics(bootstrap, {inbound: partitions})
    inbound_limit = (await topic_limits(bootstrap, [inbound]))[inbound]
    room = inbound_limit + HEADROOM
    published = [outbound, refused, dlq]
    await ensure_topics(
        bootstrap,
        dict.fromkeys(published, partitions),
        {name: {_MAX_MESSAGE_BYTES: str(room)} for name in published},
    )
    limits = await topic_limits(bootstrap, [inbound, *published])
    for name in published:
        if limits[name] < room:
            log.warning(
                "topic %s takes records of at most %d bytes, less than a maximal inbound "
                "record (%d) plus the service's headers: larger ones will be set aside",
                name,
                limits[name],
                inbound_limit,
            )
    return limits
