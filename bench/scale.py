"""Scale figures: 1, 2 and 3 ingest processes against one PostgreSQL store (issue 10).

Run with ``make bench-scale`` or ``.venv/bin/python -m bench.scale`` (Kafka and PostgreSQL
from ``deploy/local/services.sh start``; see ``bench/README.md``). For each size N:

1. a fresh database and fresh topics (6 inbound partitions); the demo stream
   (``service.demo.generate``: accepted, refused, malformed and duplicate records) is
   produced to the inbound topic first (not timed);
2. ``lifecycle run --role relay`` (the active relay), ``--role project`` (the projector), a
   second ``--role relay`` (the standby), then N ``lifecycle run --role ingest`` at once;
3. **events/s**: records stored per second (positions polled every 20 ms), from the moment
   the consumer group is stable with N members (the coordinator says so) to the last record
   stored; the records stored while the group formed are left out of the rate (a workload
   (nearly: 90%) stored before the group settles is timed from the first record stored);
4. **failover**: when the relay has published about a third of what is stored, the active
   relay is killed with SIGKILL; the time until the standby holds the relay lease (PostgreSQL
   ``pg_locks``), and until the relay position moves again;
5. **repeats**: once the relay has published everything, the records on the outbound,
   refused and dead-letter topics that appear more than once (at-least-once after the kill);
6. every record is checked to be stored once (stats == records) and no process but the
   killed one may have exited; then the processes are stopped, the topics deleted and the
   database dropped.

The last line is ``scale: 1→N speed-up X; failover Y s`` (N the largest size, X its
events/s over one process's, Y the longest takeover measured).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers.inbound import position_name
from consumers.producer import key_of, produce
from consumers.topics import ensure_service_topics
from lifecycle.application import ProviderLifecycle
from service.demo import generate
from store.url import persistence_env

ADMIN_URL = "postgresql://lifecycle:lifecycle@127.0.0.1:5432/lifecycle"
LIFECYCLE = str(Path(sys.executable).with_name("lifecycle"))
PARTITIONS = 6
RELAY_TRACKING = "relay:kafka"


def say(*parts: object) -> None:
    print(*parts, flush=True)


# --- services -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"bench_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlparse(admin_url)._replace(path=f"/{name}").geturl()
    finally:
        for attempt in range(50):
            try:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
                if attempt == 49:
                    raise
                time.sleep(0.2)  # an autovacuum worker still in it


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
            f"bench-scale-{tag}.inbound",
            f"bench-scale-{tag}.events",
            f"bench-scale-{tag}.refused",
            f"bench-scale-{tag}.inbound.dlq",
            f"bench-scale-{tag}-group",
        )

    @property
    def published(self) -> tuple[str, str, str]:
        return (self.outbound, self.refused, self.dlq)


class Process:
    """One ``lifecycle run --role …`` subprocess."""

    def __init__(self, role: str, env: dict[str, str], log: Path) -> None:
        self.role = role
        self.log = log
        self.killed = False
        env = {**env, "LIFECYCLE_HTTP_BIND": f"127.0.0.1:{free_port()}"}
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [LIFECYCLE, "run", "--role", role], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        self.killed = True
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def check(self) -> None:
        if not self.killed and self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.role} (pid {self.pid}) exited by itself:\n{tail}")

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout=30)


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, processes: Sequence[Process] = ()
) -> Any:
    """Poll an observable condition with a deadline (and fail when a process has died)."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            process.check()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Store:
    """Cheap observations of the store: stored positions and who holds a lease."""

    def __init__(self, url: str, topic: str) -> None:
        self.url = url
        self.topic = topic
        self.app = ProviderLifecycle(env=persistence_env(url))
        self.conn = psycopg.connect(url, autocommit=True)

    def consumed(self) -> int:
        """Records stored (each in one outcome): Σ over partitions of position + 1."""
        total = 0
        for partition in range(PARTITIONS):
            try:
                position = self.app.position(position_name(self.topic, partition))
            except Exception:  # the tables are not there yet
                return 0
            total += 0 if position is None else position + 1
        return total

    def relay_position(self) -> int:
        try:
            return self.app.position(RELAY_TRACKING) or 0
        except Exception:
            return 0

    def head(self) -> int:
        return self.app.process_recorder.max_notification_id() or 0

    def lease_pids(self, lease: str) -> tuple[set[int], set[int]]:
        """(holders, waiters): OS pids of the processes with a lease connection for
        ``lease`` (``application_name`` ``lifecycle-lease:<lease>:<pid>``) that hold an
        advisory lock, and those that do not."""
        rows = self.conn.execute(
            "SELECT a.application_name, EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid"
            " AND l.locktype = 'advisory' AND l.granted) FROM pg_stat_activity a"
            " WHERE a.datname = current_database() AND a.application_name LIKE %s",
            (f"lifecycle-lease:{lease}:%",),
        ).fetchall()
        holders: set[int] = set()
        waiters: set[int] = set()
        for name, holds in rows:
            pid = int(str(name).rsplit(":", 1)[1])
            (holders if holds else waiters).add(pid)
        return holders, waiters

    def close(self) -> None:
        self.conn.close()


# --- Kafka ----------------------------------------------------------------------------


async def group_stable(bootstrap: str, group: str, members: int) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        _error, _group, state, _ptype, _protocol, found = response.groups[0][:6]
        return bool(state == "Stable" and len(found) == members)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


async def read_ids(bootstrap: str, topics: Topics) -> list[list[object]]:
    """Per published topic, the identity of every record on it (repeats included): the
    CloudEvent ``id``; for a dead letter its original partition and offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics.published
            for p in sorted(await producer.partitions_for(t))
        ]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        ids: dict[str, list[object]] = {t: [] for t in topics.published}
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    if tp.topic == topics.dlq:
                        h = dict(r.headers)
                        ids[tp.topic].append((h["x-original-partition"], h["x-original-offset"]))
                    else:
                        ids[tp.topic].append(json.loads(r.value)["id"])
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return list(ids.values())
    finally:
        await consumer.stop()


# --- one size -------------------------------------------------------------------------


@dataclass
class SizeRun:
    ingest: int
    records: int
    events_per_s: float
    in_window: int
    group_seconds: float
    published_seconds: float
    repeats: int
    takeover_s: float
    resumed_s: float


def run_size(
    n: int, lines: Sequence[bytes], bootstrap: str, admin_url: str, logs: Path, timeout: float
) -> SizeRun:
    topics = Topics.unique()
    asyncio.run(
        ensure_service_topics(
            bootstrap,
            inbound=topics.inbound,
            outbound=topics.outbound,
            refused=topics.refused,
            dlq=topics.dlq,
            partitions=PARTITIONS,
        )
    )
    processes: list[Process] = []
    try:
        with fresh_database(admin_url) as url:
            sent = asyncio.run(
                produce(bootstrap, topics.inbound, ((key_of(v), v, []) for v in lines))
            )
            assert sent == len(lines)
            env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
            env.update(
                LIFECYCLE_KAFKA_BOOTSTRAP=bootstrap,
                LIFECYCLE_STORE=url,
                LIFECYCLE_INBOUND_TOPIC=topics.inbound,
                LIFECYCLE_OUTBOUND_TOPIC=topics.outbound,
                LIFECYCLE_REFUSED_TOPIC=topics.refused,
                LIFECYCLE_DLQ_TOPIC=topics.dlq,
                LIFECYCLE_GROUP_ID=topics.group,
                LIFECYCLE_PARTITIONS=str(PARTITIONS),
            )

            def start(role: str, name: str) -> Process:
                process = Process(role, env, logs / f"n{n}-{name}.log")
                processes.append(process)
                return process

            store = Store(url, topics.inbound)
            try:
                active = start("relay", "relay-a")
                wait_until(
                    lambda: active.pid in store.lease_pids("relay")[0],
                    120,
                    "the first relay to hold the relay lease",
                    processes,
                )
                start("project", "project")
                standby = start("relay", "relay-b")
                wait_until(
                    lambda: standby.pid in store.lease_pids("relay")[1],
                    120,
                    "the second relay to stand by",
                    processes,
                )
                for i in range(n):
                    start("ingest", f"ingest-{i}")

                # Ingest: poll the stored positions; the rate counts from a stable group.
                t_started = time.perf_counter()
                stable_at: float | None = None
                stable_consumed = 0
                first_at: float | None = None
                first_consumed = 0
                done_at = 0.0
                samples = 0
                deadline = time.monotonic() + timeout
                while True:
                    for process in processes:
                        process.check()
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"N={n}: {store.consumed()} of {len(lines)} stored")
                    now = time.perf_counter()
                    count = store.consumed()
                    if count >= len(lines):
                        done_at = now
                        break
                    if first_at is None and count > 0:
                        first_at, first_consumed = now, count
                    if (
                        stable_at is None
                        and samples % 10 == 0
                        and asyncio.run(group_stable(bootstrap, topics.group, n))
                    ):
                        stable_at, stable_consumed = time.perf_counter(), store.consumed()
                    samples += 1
                    time.sleep(0.02)  # the sampling period of the positions
                if stable_at is None or len(lines) - stable_consumed < len(lines) // 10:
                    # (nearly) all stored before the group settled: from the first record
                    stable_at, stable_consumed = first_at or t_started, first_consumed
                window = max(done_at - stable_at, 1e-3)
                in_window = len(lines) - stable_consumed
                rate = in_window / window

                # Failover: kill the active relay about a third of the way through the log.
                head = store.head()
                wait_until(
                    lambda: store.relay_position() >= head // 3,
                    timeout,
                    "the relay to publish a third",
                    processes,
                )
                at_kill = store.relay_position()
                killed = time.perf_counter()
                active.kill()
                wait_until(
                    lambda: standby.pid in store.lease_pids("relay")[0],
                    120,
                    "the standby relay to take over",
                    processes,
                )
                takeover = time.perf_counter() - killed
                if at_kill < head:
                    wait_until(
                        lambda: store.relay_position() > at_kill,
                        120,
                        "the relay position to move again",
                        processes,
                    )
                resumed = time.perf_counter() - killed
                wait_until(
                    lambda: store.relay_position() >= head,
                    timeout,
                    "the relay to publish everything",
                    processes,
                )
                published = time.perf_counter() - t_started
                for process in processes:
                    process.check()
                stats = store.app.stats()
                if stats["consumed"] != len(lines):
                    raise RuntimeError(f"N={n}: stored {stats['consumed']} of {len(lines)}")
            finally:
                store.close()
            ids = asyncio.run(read_ids(bootstrap, topics))
            repeats = sum(len(found) - len(set(found)) for found in ids)
            for process in processes:
                process.check()
            codes = [p.stop() for p in processes if not p.killed]
            if any(code != 0 for code in codes):
                raise RuntimeError(f"N={n}: exit codes on SIGTERM {codes}")
            processes.clear()
            return SizeRun(
                n,
                len(lines),
                rate,
                in_window,
                stable_at - t_started,
                published,
                repeats,
                takeover,
                resumed,
            )
    finally:
        for process in processes:
            process.stop()
        with contextlib.suppress(Exception):
            asyncio.run(delete_topics(bootstrap, [topics.inbound, *topics.published]))


# --- main -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", type=int, default=15000, help="demo providers (≈4 rec each)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sizes", default="1,2,3", help="ingest processes per run")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per wait")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    bootstrap = os.environ.get("LIFECYCLE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    store = os.environ.get("LIFECYCLE_STORE", "")
    admin_url = store if store.startswith("postgresql://") else ADMIN_URL
    lines = list(generate(providers=args.providers, seed=args.seed))
    say(
        f"workload: {len(lines)} records (demo stream, {args.providers} providers), "
        f"{PARTITIONS} partitions; sizes {sizes}; cores {os.cpu_count()}; "
        f"load {os.getloadavg()[0]:.2f}"
    )
    logs = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    runs: list[SizeRun] = []
    try:
        for n in sizes:
            run = run_size(n, lines, bootstrap, admin_url, logs, args.timeout)
            runs.append(run)
            say(
                f"N={n} ingest: {run.events_per_s:,.0f} events/s "
                f"({run.in_window} records timed, from {run.group_seconds:.1f} s); "
                f"all published after {run.published_seconds:.1f} s; "
                f"repeats {run.repeats}; relay failover {run.takeover_s:.2f} s "
                f"(publishing again after {run.resumed_s:.2f} s); load {os.getloadavg()[0]:.2f}"
            )
    finally:
        if args.keep_logs:
            say(f"logs: {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)
    base = runs[0].events_per_s
    top = runs[-1]
    failover = max(r.takeover_s for r in runs)
    speed_up = top.events_per_s / base if base > 0 else float("nan")
    say(f"scale: {runs[0].ingest}→{top.ingest} speed-up {speed_up:.2f}; failover {failover:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
