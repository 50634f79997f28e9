"""Ingest throughput on the real exactly-once path, against a raw ``COPY`` baseline.

Run with ``make bench`` or ``.venv/bin/python -m bench.ingest`` (Kafka and PostgreSQL
from ``deploy/local/services.sh start``; see ``bench/README.md``). One run:

1. generates realistic, valid CloudEvents (20,000 providers × 10 events: Applied with
   a fully qualifying payload, Admitted, DepositPaid, then ViolationRecorded /
   DepositPaid / DepositDeducted), key = USCC, and produces them all to a fresh
   6-partition topic (not timed);
2. baseline: ``COPY … FROM STDIN (FORMAT BINARY)`` with psycopg of as many rows of the
   events' columns (uuid, bigint, text, bytea of the mean stored state size) into a
   fresh table, 1,000 rows per transaction (median of 3); then, for context only, into
   a table with the events table's full DDL (primary key, bigserial, unique index);
3. ingest: the service's ``InboundConsumer`` with a fresh ``ProviderLifecycle`` on a
   fresh PostgreSQL database, timed from the first record consumed to the last one
   recorded (``on_results`` runs after the batch's transaction has committed); then
   every partition's stored position and the number of stored events are checked;
4. the same ingest on a SQLite file store (``--sqlite-events`` to use fewer);
5. deletes the topic and drops the database.

``--breakdown`` times the stages of ``ProviderLifecycle.process`` and the cyclic GC,
``--profile DIR`` runs cProfile. The last line is ``ingest: X events/s; raw COPY:
Y rows/s; ratio: Z``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import logging
import os
import platform
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
import types
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

import lifecycle.application as application_module
from bench.group import ingest_group
from bench.legacy_inbound import LegacyInbound
from consumers.inbound import InboundConfig, InboundConsumer, position_name
from consumers.producer import produce
from consumers.topics import ensure_topics
from lifecycle.application import InboundMessage, ProviderLifecycle, Result
from lifecycle.uscc import check_character
from service.settings import Settings
from store.url import persistence_env

log = logging.getLogger("bench.ingest")

ADMIN_URL = "postgresql://lifecycle:lifecycle@127.0.0.1:5432/lifecycle"
BENCH_DB = "lifecycle_bench"
SOURCE = "/taobao-live/provider-admin"
CST = timezone(timedelta(hours=8))
DEPOSIT_FEN = 10_000_000  # A1.1.1-3: CNY 100,000
MIN_CAPITAL_FEN = 50_000_000  # A1.1.1-2b: CNY 500,000
CAPABILITIES = (
    "bd_expansion",
    "operations",
    "accompanied_running",
    "training",
    "paid_traffic",
    "goods_distribution",
)
ARTICLE_2 = (
    "A2.1-1",
    "A2.1-2",
    *(f"A2.2-{n}" for n in range(1, 8)),
    "A2.3-1",
    "A2.3-2",
    "A2.3-3",
)
REGIONS = (
    ("330100", "杭州"),
    ("310000", "上海"),
    ("110000", "北京"),
    ("440100", "广州"),
    ("440300", "深圳"),
    ("510100", "成都"),
    ("420100", "武汉"),
    ("320500", "苏州"),
    ("350200", "厦门"),
    ("370200", "青岛"),
)
TRADE_NAMES = (
    "星火",
    "云帆",
    "锦程",
    "蓝海",
    "优选",
    "新潮",
    "领航",
    "盛世",
    "汇聚",
    "启明",
    "长风",
)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华"
VIOLATIONS = (
    "数据造假：直播间刷量",
    "未按约定履行合作协议",
    "以平台名义招商",
    "实际主播与报备身份不一致",
    "承诺未兑现",
    "侵犯他人权益",
)


# --- generating the events ------------------------------------------------------------


def uscc(n: int, region: str) -> str:
    """A valid USCC: an enterprise (91) in ``region`` with a numbered organisation code."""
    first17 = f"91{region}{n:09d}"
    return first17 + check_character(first17)


@dataclass
class Workload:
    """The events in produce order: (key, value) plus (provider index, version) of each."""

    records: list[tuple[bytes, bytes]]
    versions: list[tuple[int, int]]
    providers: int

    @property
    def bytes(self) -> int:
        return sum(len(v) for _, v in self.records)


def _event(rng: random.Random, type_: str, subject: str, when: datetime, data: dict[str, Any]):
    return {
        "specversion": "1.0",
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "source": SOURCE,
        "type": type_,
        "subject": subject,
        "time": when.isoformat(timespec="seconds"),
        "datacontenttype": "application/json",
        "data": data,
    }


def provider_events(rng: random.Random, n: int, per_provider: int) -> list[dict[str, Any]]:
    """One provider's history: it qualifies, is admitted, pays, then lives a little."""
    region, city = REGIONS[n % len(REGIONS)]
    subject = uscc(n, region)
    applied_at = datetime(2024, 1, 1, 9, tzinfo=CST) + timedelta(
        days=rng.randrange(600), minutes=rng.randrange(9 * 60)
    )
    registered_on = (applied_at - timedelta(days=400 + rng.randrange(3000))).date()
    contact = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
    capabilities = list(CAPABILITIES)
    rng.shuffle(capabilities)
    applied = {
        "company_name": f"{city}{rng.choice(TRADE_NAMES)}{n}直播服务有限公司",
        "entity_type": "enterprise",
        "real_name_verified": True,
        "general_taxpayer": True,
        "registered_capital_fen": MIN_CAPITAL_FEN * rng.randint(1, 40),
        "registered_on": registered_on.isoformat(),
        "advantage_statement": rng.choice((None, None, "头部主播孵化经验，年GMV超亿元")),
        "is_store_account": False,
        "entity_city": city,
        "service_city": city,
        "capabilities": capabilities,
        "contact": {"name": contact, "phone": f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"},
    }
    when = applied_at
    events = [_event(rng, "provider.Applied", subject, when, applied)]
    when += timedelta(days=rng.randint(1, 10), minutes=rng.randrange(600))
    events.append(
        _event(rng, "provider.Admitted", subject, when, {"decided_by": f"ops-{rng.randint(1, 40)}"})
    )
    when += timedelta(days=rng.randint(1, 5), minutes=rng.randrange(600))
    events.append(_deposit_paid(rng, subject, when, DEPOSIT_FEN))
    for _ in range(per_provider - 3):
        when += timedelta(days=rng.randint(1, 30), minutes=rng.randrange(600))
        kind = rng.random()
        if kind < 0.4:
            data = {
                "clause": rng.choice(ARTICLE_2),
                "severity": rng.choice(("minor", "minor", "serious", "severe")),
                "description": rng.choice(VIOLATIONS),
                "evidence_ref": rng.choice((None, f"EV-{rng.randrange(10**8):08d}")),
            }
            events.append(_event(rng, "provider.ViolationRecorded", subject, when, data))
        elif kind < 0.7:
            events.append(_deposit_paid(rng, subject, when, rng.randint(1, 50) * 100_000))
        else:
            data = {
                "amount_fen": rng.randint(1, 20) * 50_000,
                "reason": "违规扣罚",
                "clause": rng.choice(("A4-1", "A3-1", "A3-2")),
            }
            events.append(_event(rng, "provider.DepositDeducted", subject, when, data))
    return events


def _deposit_paid(rng: random.Random, subject: str, when: datetime, amount: int):
    data = {"amount_fen": amount, "payment_ref": f"PAY-{rng.randrange(10**12):012d}"}
    return _event(rng, "provider.DepositPaid", subject, when, data)


def generate(providers: int, per_provider: int, seed: int = 20260101) -> Workload:
    """Every provider's history, interleaved in business-time order (per-key order kept)."""
    rng = random.Random(seed)
    rows: list[tuple[datetime, int, int, bytes, bytes]] = []
    for n in range(providers):
        for version, ev in enumerate(provider_events(rng, n, per_provider), start=1):
            value = json.dumps(ev, ensure_ascii=False, separators=(",", ":")).encode()
            rows.append(
                (datetime.fromisoformat(ev["time"]), n, version, ev["subject"].encode(), value)
            )
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return Workload(
        records=[(key, value) for _, _, _, key, value in rows],
        versions=[(n, version) for _, n, version, _, _ in rows],
        providers=providers,
    )


# --- Kafka ----------------------------------------------------------------------------


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        offsets = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


async def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(topics))
    finally:
        await admin.close()


# --- PostgreSQL -----------------------------------------------------------------------


def with_db(url: str, db: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + db))


def recreate_database(admin_url: str, db: str, drop_only: bool = False) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{db}"')


# The eventsourcing library's events table (PostgresApplicationRecorder), verbatim shape.
EVENTS_TABLE_DDL = """
CREATE TABLE {name} (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version));
CREATE UNIQUE INDEX {name}_notification_id_idx ON {name} (notification_id ASC);
"""
PLAIN_TABLE_DDL = """
CREATE TABLE {name} (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea);
"""


def copy_baseline(
    url: str, table: str, ddl: str, rows: Sequence[tuple[Any, ...]], batch: int
) -> float:
    """Seconds to COPY ``rows`` into a fresh table, ``batch`` rows per transaction."""
    copy_sql = (
        f"COPY {table} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in ddl.format(name=table).split(";"):
            if statement.strip():
                conn.execute(statement)
        with conn.cursor() as cur:
            started = time.perf_counter()
            for i in range(0, len(rows), batch):
                with conn.transaction(), cur.copy(copy_sql) as copy:
                    copy.set_types(["uuid", "int8", "text", "bytea"])
                    for row in rows[i : i + batch]:
                        copy.write_row(row)
            elapsed = time.perf_counter() - started
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
        conn.execute(f"DROP TABLE {table}")
    if count != len(rows):
        raise RuntimeError(f"baseline stored {count} rows, expected {len(rows)}")
    return elapsed


def stored_state_sizes(url: str, table: str) -> tuple[float, int, str]:
    """Mean and median ``state`` size and the most common topic of the stored events."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT avg(octet_length(state)), "
            f"percentile_disc(0.5) WITHIN GROUP (ORDER BY octet_length(state)), "
            f"mode() WITHIN GROUP (ORDER BY topic) FROM {table}"
        ).fetchone()
    assert row is not None
    return float(row[0]), int(row[1]), str(row[2])


def sample_states(workload: Workload, providers: int = 200) -> tuple[float, str]:
    """Mean stored state size and most common topic, from an in-memory run of a sample."""
    wanted = set(range(providers))
    app = ProviderLifecycle(env={"PERSISTENCE_MODULE": "store.memory:Factory"})
    messages = [
        InboundMessage(value, f"sample:{i}", key)
        for i, ((key, value), (n, _)) in enumerate(
            zip(workload.records, workload.versions, strict=True)
        )
        if n in wanted
    ]
    results = app.process(messages)
    assert all(r.outcome == "accepted" for r in results), Counter(r.outcome for r in results)
    notifications = app.process_recorder.select_notifications(1, len(messages) + 1)
    sizes = [len(n.state) for n in notifications]
    topic = Counter(n.topic for n in notifications).most_common(1)[0][0]
    return statistics.fmean(sizes), topic


# --- the timed ingest -----------------------------------------------------------------


@dataclass
class IngestRun:
    label: str
    batch_size: int
    events: int = 0
    seconds: float = 0.0
    process_seconds: float = 0.0
    cpu_seconds: float = 0.0
    batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    breakdown: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class Timed:
    """Notes when the first batch is in hand (mixed into the consumer under test)."""

    first: float | None = None
    first_cpu = 0.0
    batches = 0

    async def handle(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> list[Result]:
        if self.first is None:
            self.first = time.perf_counter()
            self.first_cpu = time.process_time()
        self.batches += 1
        return await super().handle(batch)  # type: ignore[misc, no-any-return]


class TimedInbound(Timed, InboundConsumer):
    """The production consumer."""


class TimedLegacy(Timed, LegacyInbound):
    """The consumer before faststream (``--compare-legacy``)."""


CHAIN = "  of which audit chain links"


@contextlib.contextmanager
def timers(app: ProviderLifecycle, into: dict[str, float]) -> Iterator[None]:
    """Cheap wall-clock timers around the stages of ``ProviderLifecycle.process``."""

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                into[name] = into.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    with contextlib.ExitStack() as stack:
        patches = [
            (application_module, "parse_record", "parse (pydantic)"),
            (application_module, "judge", "judge (aggregate)"),
            (app.repository, "get", "load misses (repository.get)"),
            (app.mapper, "to_stored_event", "mapper+transcoder"),
            (app.recorder, "insert_events", "recorder (insert transaction)"),
        ]
        # The audit hash chain written by the recorder (when the store has one): nested.
        recorder_module = sys.modules.get(type(app.recorder).__module__)
        chain_parts = [(recorder_module, n) for n in ("chain_batch", "link_batch")]
        chain_parts += [(app.recorder, n) for n in ("_heads", "_copy_links")]
        for target, name in chain_parts:
            if target is not None and callable(getattr(target, name, None)):
                patches.append((target, name, CHAIN))
        patches.append((app, "_prefetch", "prefetch (1 query a batch)"))
        for target, name, label in patches:
            original = getattr(target, name)
            setattr(target, name, timed(label, original))
            if isinstance(target, types.ModuleType):
                stack.callback(setattr, target, name, original)
            else:
                stack.callback(delattr, target, name)
        gc_started: list[float] = []

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_started.append(time.perf_counter())
            elif gc_started:
                label = f"cyclic GC, generation {info['generation']}"
                into[label] = into.get(label, 0.0) + time.perf_counter() - gc_started.pop()

        gc.callbacks.append(on_gc)
        stack.callback(gc.callbacks.remove, on_gc)
        yield


async def ingest(
    label: str,
    store: str,
    bootstrap: str,
    topic: str,
    batch_size: int,
    expected: int,
    ends: dict[int, int] | None,
    breakdown: bool = False,
    profile_dir: Path | None = None,
    timeout: float = 240.0,
    legacy: bool = False,
) -> IngestRun:
    """Consume ``expected`` records with the production consumer into ``store``."""
    run = IngestRun(label, batch_size)
    app = ProviderLifecycle(env=persistence_env(store))
    stop = asyncio.Event()
    last: list[float] = []

    def on_results(results: list[Result]) -> None:
        run.outcomes.update(r.outcome for r in results)
        if run.outcomes.total() >= expected and not last:
            last.extend((time.perf_counter(), time.process_time()))
            stop.set()

    original_process = app.process
    thread_profile = cProfile.Profile() if profile_dir else None

    failures: list[BaseException] = []

    def process(messages: Sequence[InboundMessage], positions: Sequence[Any] = ()) -> Any:
        started = time.perf_counter()
        if thread_profile:
            thread_profile.enable()
        try:
            results = original_process(messages, positions)
            failures.clear()
            return results
        except Exception as exc:  # the consumer rewinds and retries: give up on a pattern
            failures.append(exc)
            if len(failures) >= 3:
                stop.set()
            raise
        finally:
            if thread_profile:
                thread_profile.disable()
            run.process_seconds += time.perf_counter() - started

    app.process = process  # type: ignore[method-assign]
    config = InboundConfig(bootstrap, topic, f"bench-{uuid.uuid4().hex[:12]}", batch_size)
    inbound: Timed = (TimedLegacy if legacy else TimedInbound)(app, config, on_results)
    loop_profile = cProfile.Profile() if profile_dir else None
    try:
        with timers(app, run.breakdown) if breakdown else contextlib.nullcontext():
            if loop_profile:
                loop_profile.enable()
            try:
                await asyncio.wait_for(inbound.run(stop), timeout)  # type: ignore[attr-defined]
            except TimeoutError:
                raise RuntimeError(
                    f"{label}: {run.outcomes.total()} of {expected} records after {timeout}s"
                ) from None
            finally:
                if loop_profile:
                    loop_profile.disable()
        if len(failures) >= 3:
            raise RuntimeError(f"{label}: process() failed 3 times in a row: {failures[-1]!r}")
        assert inbound.first is not None and last
        run.seconds = last[0] - inbound.first
        run.cpu_seconds = last[1] - inbound.first_cpu
        run.events = run.outcomes.total()
        run.batches = inbound.batches
        run.stored = app.process_recorder.max_notification_id() or 0
        if ends is not None:  # every partition's stored position is its last offset
            for partition, end in ends.items():
                stored = app.position(position_name(topic, partition))
                if stored != end - 1:
                    raise RuntimeError(f"{label}: partition {partition} at {stored}, end {end}")
    finally:
        app.close()
    if profile_dir and thread_profile and loop_profile:
        profile_dir.mkdir(parents=True, exist_ok=True)
        slug = "-".join(label.lower().replace(",", "").split()[:3])
        thread_profile.dump_stats(profile_dir / f"{slug}-process.prof")
        loop_profile.dump_stats(profile_dir / f"{slug}-loop.prof")
        print(f"\n--- cProfile of ProviderLifecycle.process ({label}), top by own time ---")
        print(top_functions(thread_profile, 22))
        print(f"--- cProfile of the event loop thread ({label}: aiokafka), top by own time ---")
        print(top_functions(loop_profile, 12))
    return run


def top_functions(profile: cProfile.Profile, limit: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(lines[start : start + limit + 1])


def describe(run: IngestRun, note: str = "") -> str:
    other = run.seconds - run.process_seconds
    lines = [
        f"{run.label}: {run.events:,} records in {run.seconds:.2f} s = {run.rate:,.0f} events/s"
        f"{note}",
        f"  batch size {run.batch_size}: {run.batches} batches of {run.events / run.batches:,.0f}"
        f" on average; outcomes {dict(run.outcomes)}; {run.stored:,} events stored",
        f"  in ProviderLifecycle.process {run.process_seconds:.2f} s "
        f"({run.process_seconds / run.seconds:.0%}); Kafka fetch, commit and the loop "
        f"{other:.2f} s ({other / run.seconds:.0%}); this process used "
        f"{run.cpu_seconds:.2f} s of CPU ({run.cpu_seconds / run.seconds:.2f} cores)",
    ]
    if run.breakdown:
        stages = {k: v for k, v in run.breakdown.items() if not k.startswith("cyclic GC")}
        collections = {k: v for k, v in run.breakdown.items() if k.startswith("cyclic GC")}
        nested = stages.pop(CHAIN, None)
        stages["rest of process()"] = run.process_seconds - sum(stages.values())
        if nested is not None:  # shown under the recorder, which contains it
            names = list(stages)
            at = (
                names.index("recorder (insert transaction)") + 1
                if "recorder (insert transaction)" in names
                else len(names)
            )
            stages = dict([*list(stages.items())[:at], (CHAIN, nested), *list(stages.items())[at:]])
        lines.append("  wall time inside process(), by stage:")
        for name, seconds in [*stages.items(), *sorted(collections.items())]:
            share = seconds / run.seconds
            lines.append(
                f"    {name:<32} {seconds:6.2f} s {seconds / run.events * 1e6:6.1f} µs/event"
                f" {share:4.0%}" + ("  (pauses inside the stages above)" if "GC" in name else "")
            )
    return "\n".join(lines)


# --- the run --------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> str:
    settings = Settings()
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    batch_size = args.batch_size or settings.batch_size
    if args.admin_url is None:  # the service's PostgreSQL (make bench exports it), or local
        postgres = settings.store.startswith(("postgresql://", "postgres://"))
        args.admin_url = settings.store if postgres else ADMIN_URL
    if urlparse(args.admin_url).path.lstrip("/") == args.database:
        raise SystemExit(f"--database {args.database} is the admin database: it would be dropped")
    bench_url = with_db(args.admin_url, args.database)
    topic = f"bench-in-{uuid.uuid4()}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    print(
        f"bench.ingest {datetime.now(UTC).isoformat(timespec='seconds')} on {platform.node()}: "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{psycopg.pq.__impl__} psycopg {psycopg.__version__} (libpq {psycopg.pq.version()})"
    )
    if psycopg.pq.__impl__ == "python":
        print("  warning: pure-Python psycopg; install psycopg[binary] (ARCHITECTURE.md)")

    started = time.perf_counter()
    workload = generate(args.providers, args.events_per_provider)
    total = len(workload.records)
    print(
        f"generated {total:,} events for {workload.providers:,} providers "
        f"({workload.bytes / total:.0f} bytes/event) in {time.perf_counter() - started:.1f} s"
    )
    try:
        await ensure_topics(bootstrap, {topic: args.partitions})
        started = time.perf_counter()
        sent = await produce(bootstrap, topic, ((k, v, []) for k, v in workload.records))
        ends = await end_offsets(bootstrap, topic, args.partitions)
        assert sent == total == sum(ends.values()), (sent, total, ends)
        print(
            f"produced to {topic} ({args.partitions} partitions: "
            f"{sorted(ends.values())}) in {time.perf_counter() - started:.1f} s (not timed)"
        )
        recreate_database(args.admin_url, args.database)

        # Baseline: rows shaped like the stored events, same order of (aggregate, version).
        mean_state, common_topic = sample_states(workload)
        state = os.urandom(round(mean_state))
        ids = [uuid.uuid4() for _ in range(workload.providers)]
        rows = [(ids[n], version, common_topic, state) for n, version in workload.versions]
        # Headline: a fresh table with the four columns and nothing else, median of a few
        # runs (the machine is shared); then, for context, the events table's full DDL.
        plain = [
            copy_baseline(bench_url, "bench_copy", PLAIN_TABLE_DDL, rows, args.copy_batch)
            for _ in range(args.copy_repeats)
        ]
        copy_rate = total / statistics.median(plain)
        print(
            f"raw COPY: {total:,} rows (uuid, bigint, text {common_topic!r}, bytea of "
            f"{len(state)} B) into a fresh table, {args.copy_batch} rows per transaction: "
            f"{copy_rate:,.0f} rows/s (median of "
            + ", ".join(f"{total / s:,.0f}" for s in plain)
            + ")"
        )
        indexed = copy_baseline(bench_url, "bench_copy", EVENTS_TABLE_DDL, rows, args.copy_batch)
        print(
            f"  same rows into a table with the events table's DDL (primary key, bigserial "
            f"and its unique index): {total / indexed:,.0f} rows/s (context, not the ratio)"
        )
        # The service does not hold the workload: free it so that it does not slow the
        # cyclic GC of the timed runs (a full collection walks every tracked object).
        del rows, workload, ids
        gc.collect()

        pg = await ingest(
            "PostgreSQL ingest",
            bench_url,
            bootstrap,
            topic,
            batch_size,
            total,
            ends,
            breakdown=args.breakdown,
            profile_dir=args.profile,
        )
        print(describe(pg))
        mean, median, _ = stored_state_sizes(bench_url, "provider_lifecycle_events")
        print(
            f"  stored state: mean {mean:.0f} B, median {median} B (baseline used {len(state)} B)"
        )
        if pg.stored < total or pg.outcomes["accepted"] != total:
            raise RuntimeError(f"expected {total} accepted and stored, got {pg}")
        old: IngestRun | None = None
        if args.compare_legacy:  # the aiokafka path before faststream, same workload
            recreate_database(args.admin_url, args.database)
            old = await ingest(
                "PostgreSQL ingest, legacy aiokafka path",
                bench_url,
                bootstrap,
                topic,
                batch_size,
                total,
                ends,
                legacy=True,
            )
            print(describe(old))

        group_rate = 0.0
        if args.consumers > 1:
            recreate_database(args.admin_url, args.database)
            group = await asyncio.to_thread(
                ingest_group, bench_url, bootstrap, topic, batch_size, total, ends, args.consumers
            )
            group_rate = group.events / group.seconds
            print(
                f"PostgreSQL ingest, a consumer group of {group.consumers} processes: "
                f"{group.events:,} records in {group.seconds:.2f} s = {group_rate:,.0f} events/s "
                f"({group_rate / pg.rate:.2f}x one process); every partition at its last offset"
            )
            if args.compare_legacy:
                recreate_database(args.admin_url, args.database)
                legacy_group = await asyncio.to_thread(
                    ingest_group,
                    bench_url,
                    bootstrap,
                    topic,
                    batch_size,
                    total,
                    ends,
                    args.consumers,
                    300.0,
                    True,
                )
                legacy_rate = legacy_group.events / legacy_group.seconds
                print(
                    f"PostgreSQL ingest, legacy aiokafka path, a group of {args.consumers}: "
                    f"{legacy_group.events:,} records in {legacy_group.seconds:.2f} s = "
                    f"{legacy_rate:,.0f} events/s"
                )
                print(
                    f"compare: faststream / legacy: one process {pg.rate / old.rate:.2f}x, "  # type: ignore[union-attr]
                    f"group {group_rate / legacy_rate:.2f}x"
                )

        if args.sqlite_events:
            expected = min(args.sqlite_events, total)
            lite = await ingest(
                "SQLite ingest",
                f"sqlite:///{tmp / 'bench.db'}",
                bootstrap,
                topic,
                batch_size,
                expected,
                ends if expected == total else None,
                breakdown=args.breakdown,
                profile_dir=args.profile,
            )
            note = "" if expected == total else f" (first {expected:,} records only)"
            print(describe(lite, note))
            if expected == total and (lite.stored < total or lite.outcomes["accepted"] != total):
                raise RuntimeError(f"expected {total} accepted and stored, got {lite}")
    finally:
        with contextlib.suppress(Exception):
            await delete_topics(bootstrap, [topic])
        if not args.keep_database:
            with contextlib.suppress(Exception):
                recreate_database(args.admin_url, args.database, drop_only=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"one consumer process: {pg.rate:,.0f} events/s, ratio {pg.rate / copy_rate:.2f}")
    # The headline is the service as deployed here: one consumer process per core.
    rate = max(pg.rate, group_rate)
    ratio = rate / copy_rate
    verdict = "meets" if ratio >= args.floor else "BELOW"
    print(f"floor ratio {args.floor:.2f}: {verdict}")
    return f"ingest: {rate:.0f} events/s; raw COPY: {copy_rate:.0f} rows/s; ratio: {ratio:.2f}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    p.add_argument("--providers", type=int, default=20_000)
    p.add_argument("--events-per-provider", type=int, default=10)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument(
        "--batch-size", type=int, default=None, help="default: LIFECYCLE_BATCH_SIZE / settings"
    )
    p.add_argument(
        "--consumers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes in the consumer group for the headline run (default: one per core)",
    )
    p.add_argument("--copy-batch", type=int, default=1000, help="baseline rows per transaction")
    p.add_argument("--copy-repeats", type=int, default=3, help="baseline runs (median)")
    p.add_argument(
        "--sqlite-events", type=int, default=200_000, help="records for the SQLite run; 0 skips"
    )
    p.add_argument("--bootstrap", default=None, help="default: LIFECYCLE_KAFKA_BOOTSTRAP")
    p.add_argument(
        "--admin-url",
        default=None,
        help="a database to run CREATE DATABASE in (default: LIFECYCLE_STORE if PostgreSQL, "
        f"else {ADMIN_URL})",
    )
    p.add_argument("--database", default=BENCH_DB, help="dropped and created for the run")
    p.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    p.add_argument("--breakdown", action="store_true", help="time the stages of process()")
    p.add_argument("--profile", type=Path, default=None, help="write cProfile stats to DIR")
    p.add_argument("--floor", type=float, default=0.10)
    p.add_argument(
        "--compare-legacy",
        action="store_true",
        help="also run the aiokafka consumer of before faststream (one process and group)",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # A freshly created topic has no leader for a moment: the producer retries, quietly.
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)
    last_line = asyncio.run(main(parse_args()))
    sys.stdout.flush()
    print(last_line)
