"""Driving the real service in tests: topics, subprocesses, reading topics to their end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from consumers.producer import key_of, produce
from consumers.topics import ensure_service_topics, ensure_topics
from lifecycle.application import ProviderLifecycle
from store.url import persistence_env

LIFECYCLE = str(Path(sys.executable).with_name("lifecycle"))


@dataclass(frozen=True)
class Topics:
    inbound: str
    outbound: str
    refused: str
    dlq: str
    group: str

    @classmethod
    def unique(cls) -> Topics:
        tag = uuid.uuid4().hex[:10]
        return cls(
            f"it-{tag}.inbound",
            f"it-{tag}.events",
            f"it-{tag}.refused",
            f"it-{tag}.inbound.dlq",
            f"it-{tag}-group",
        )

    def create(self, bootstrap: str, partitions: int = 6) -> dict[str, int]:
        """The topics as ``lifecycle run`` creates them: the ones it publishes to with room
        for a maximal inbound record plus its headers; every topic's ``max.message.bytes``."""
        return asyncio.run(
            ensure_service_topics(
                bootstrap,
                inbound=self.inbound,
                outbound=self.outbound,
                refused=self.refused,
                dlq=self.dlq,
                partitions=partitions,
            )
        )

    def env(self, bootstrap: str, store: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
        env.update(
            LIFECYCLE_KAFKA_BOOTSTRAP=bootstrap,
            LIFECYCLE_STORE=store,
            LIFECYCLE_INBOUND_TOPIC=self.inbound,
            LIFECYCLE_OUTBOUND_TOPIC=self.outbound,
            LIFECYCLE_REFUSED_TOPIC=self.refused,
            LIFECYCLE_DLQ_TOPIC=self.dlq,
            LIFECYCLE_GROUP_ID=self.group,
            LIFECYCLE_HTTP_BIND=f"127.0.0.1:{free_port()}",
            LIFECYCLE_API_TOKENS="reader:it-reader,auditor:it-auditor,admin:it-admin",
        )
        env.update(extra)
        return env


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str = "test") -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlparse(admin_url)._replace(path=f"/{name}").geturl()
    finally:
        drop_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop a test database; retried while an autovacuum worker (a superuser process that
    ``WITH (FORCE)`` may not terminate) is still working in it."""
    for attempt in range(50):
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == 49:
                raise
            time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a real condition (not a fixed sleep) until it holds, or fail with ``what``."""
    deadline = time.monotonic() + timeout
    interval = 0.05
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def produce_lines(bootstrap: str, topic: str, lines: Sequence[bytes], partitions: int = 6) -> int:
    async def go() -> int:
        await ensure_topics(bootstrap, {topic: partitions})
        return await produce(bootstrap, topic, ((key_of(line), line, []) for line in lines))

    return asyncio.run(go())


def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its current end offsets, in partition order."""

    async def go() -> list[ConsumerRecord]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            partitions = await producer.partitions_for(topic)  # waits for the metadata
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            records: list[ConsumerRecord] = []
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, recs in batch.items():
                    records.extend(r for r in recs if r.offset < ends[tp])
                    if recs and recs[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(go())


class Service:
    """``lifecycle run`` as a real subprocess."""

    def __init__(self, env: dict[str, str], log: Path, role: str | None = None) -> None:
        self.env = env
        self.log = log
        self.role = role  # ``--role``: None runs every role
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        roles = [] if self.role is None else ["--role", self.role]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [LIFECYCLE, "run", *roles], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def assert_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"service exited: {self.log.read_text()[-3000:]}")


_apps: dict[str, ProviderLifecycle] = {}


def stats(store: str) -> dict[str, int]:
    """The store's outcome counts (one reader per store, reused across polls)."""
    if store not in _apps:
        _apps[store] = ProviderLifecycle(env=persistence_env(store))
    return _apps[store].stats()
