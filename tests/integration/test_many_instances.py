"""Many instances, one store (issue 10): three ``lifecycle run`` with every role against one
PostgreSQL store and one 6-partition inbound topic; two join late, the relay's holder is
killed with SIGKILL mid-stream.

The stream is produced while the instances run (a live feed, ~20k records over ~40 s), so
the late joiners and the kill happen while there is work in flight. Every step waits for an
observable condition (stored positions, ``/readyz``) with a deadline.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from consumers.inbound import position_name
from consumers.relay import RelayConfig
from lifecycle.application import ProviderLifecycle
from lifecycle.evaluate import evaluate
from service.demo import generate
from store.url import persistence_env
from tests.integration.harness import (
    LIFECYCLE,
    Service,
    Topics,
    produce_lines,
    read_topic,
    stats,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AS_OF = date(2026, 11, 27)
PARTITIONS = 6
PROVIDERS = 5000  # ≈ 20k records
FEED_SECONDS = 40.0  # the stream is produced over this long
CHUNK = 250
RELAY_PAGE = RelayConfig("", "", "", "").page


class Feed(threading.Thread):
    """Produces ``lines`` in chunks at a steady rate (a live stream), each chunk acknowledged
    before the next (so per-key order holds across chunks)."""

    def __init__(self, bootstrap: str, topic: str, lines: Sequence[bytes], seconds: float):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.lines = bootstrap, topic, lines
        self.interval = seconds / max(1, len(lines) // CHUNK)
        self.sent = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, len(self.lines), CHUNK):
                if self.halt.is_set():
                    return
                began = time.monotonic()
                chunk = self.lines[start : start + CHUNK]
                self.sent += produce_lines(self.bootstrap, self.topic, chunk, PARTITIONS)
                # pacing the producer (a rate), not synchronisation
                self.halt.wait(max(0.0, self.interval - (time.monotonic() - began)))
        except BaseException as exc:  # reported by the test
            self.error = exc


def consumed(app: ProviderLifecycle, topic: str) -> int:
    """Records stored (in exactly one outcome): the sum over partitions of position + 1."""
    total = 0
    for partition in range(PARTITIONS):
        try:
            position = app.position(position_name(topic, partition))
        except Exception:  # tables not created yet by the first instance
            return 0
        total += 0 if position is None else position + 1
    return total


def roles(service: Service) -> dict[str, Any]:
    """The roles ``/readyz`` reports (``{"relay": "holding" | "standby", …}``); {} while
    the instance does not answer yet."""
    bind = service.env["LIFECYCLE_HTTP_BIND"]
    request = urllib.request.Request(
        f"http://{bind}/readyz", headers={"Authorization": "Bearer it-reader"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 503 while not ready: the body still tells
        body = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return {}
    found = body.get("roles") or body.get("checks", {}).get("roles") or {}
    return found if isinstance(found, dict) else {}


def alive(survivors: Sequence[Service], condition: Callable[[], Any]) -> Callable[[], Any]:
    """``condition``, failing at once when an instance that should run has exited."""

    def check() -> Any:
        for service in survivors:
            service.assert_alive()
        return condition()

    return check


def projected(env: dict[str, str]) -> bool:
    """Whether every view has caught up with the store (``lifecycle projections status``)."""
    status = subprocess.run(
        [LIFECYCLE, "projections", "status", "--json"], env=env, capture_output=True, check=True
    )
    views = json.loads(status.stdout)["views"]
    return bool(views) and all(v["lag"] == 0 for v in views)


def repeats(bootstrap: str, topics: Topics) -> int:
    """Records the relay published more than once, on the three topics it publishes to."""
    outbound = [json.loads(r.value)["id"] for r in read_topic(bootstrap, topics.outbound)]
    refused = [json.loads(r.value)["id"] for r in read_topic(bootstrap, topics.refused)]
    dlq = [
        tuple(v for k, v in r.headers if k in ("x-original-partition", "x-original-offset"))
        for r in read_topic(bootstrap, topics.dlq)
    ]
    return sum(len(ids) - len(set(ids)) for ids in (outbound, refused, dlq))


def test_three_instances_one_killed_one_outcome_each(
    kafka_bootstrap: str, postgres_store: str, topics: Topics, tmp_path: Path
) -> None:
    lines = list(generate(providers=PROVIDERS, seed=31))
    offline = evaluate(lines, AS_OF)
    expected = Counter(o["outcome"] for o in offline["outcomes"])
    assert expected["accepted"] and expected["refused"] and expected["malformed"]
    topics.create(kafka_bootstrap, partitions=PARTITIONS)

    def instance(name: str) -> Service:
        env = topics.env(kafka_bootstrap, postgres_store, LIFECYCLE_BATCH_SIZE="200")
        return Service(env, tmp_path / f"{name}.log")

    a, b, c = instance("a"), instance("b"), instance("c")
    app = ProviderLifecycle(env=persistence_env(postgres_store))
    feed = Feed(kafka_bootstrap, topics.inbound, lines, FEED_SECONDS)
    started: list[Service] = []
    try:
        started.append(a.start())
        wait_for(alive([a], lambda: roles(a).get("relay") == "holding"), 90, "a to hold the relay")
        feed.start()

        # ~30% consumed: two more instances join the group.
        wait_for(
            alive([a], lambda: consumed(app, topics.inbound) >= 0.3 * len(lines)),
            120,
            "30% consumed by the first instance",
        )
        started += [b.start(), c.start()]
        wait_for(
            alive(
                [a, b, c],
                lambda: all(
                    roles(s).get("relay") == "standby" and roles(s).get("project") == "standby"
                    for s in (b, c)
                ),
            ),
            90,
            "b and c up, standing by for the relay and the projector",
        )

        # Mid-stream: SIGKILL the instance that holds the relay (and the projector).
        assert roles(a).get("relay") == roles(a).get("project") == "holding"
        at_kill = consumed(app, topics.inbound)
        a.kill()
        assert feed.is_alive() and at_kill < len(lines), "the kill must come mid-stream"
        failovers = 1
        survivors = [b, c]

        wait_for(
            alive(
                survivors,
                lambda: (
                    sum(roles(s).get("relay") == "holding" for s in survivors) == 1
                    and sum(roles(s).get("project") == "holding" for s in survivors) == 1
                ),
            ),
            60,
            "a standby to take the relay and the projector over",
        )
        feed.join(timeout=FEED_SECONDS * 3)
        assert not feed.is_alive() and feed.error is None, feed.error
        assert feed.sent == len(lines)
        wait_for(
            alive(survivors, lambda: consumed(app, topics.inbound) >= len(lines)),
            180,
            "every record consumed",
        )
        head = app.process_recorder.max_notification_id() or 0
        wait_for(
            alive(survivors, lambda: (app.position("relay:kafka") or 0) >= head),
            180,
            "the relay to publish everything stored",
        )
        wait_for(alive(survivors, lambda: projected(b.env)), 180, "the projector to catch up")
        # No process exited on its own: the survivors are alive at the end.
        for service in survivors:
            service.assert_alive()
    finally:
        feed.halt.set()
        codes = {s.log.stem: s.stop() for s in started}

    # Stopped with SIGTERM, the survivors exit cleanly; the killed one died of SIGKILL.
    assert codes == {"a": -9, "b": 0, "c": 0}, codes

    # Every record ends in exactly one outcome, the ones `lifecycle evaluate` gives.
    counts = stats(postgres_store)
    assert counts["consumed"] == len(lines)
    assert {k: counts[k] for k in expected} == dict(expected)

    # The outbound topic holds every accepted event, contiguous sequences per subject.
    accepted = {o["id"] for o in offline["outcomes"] if o["outcome"] == "accepted"}
    outbound = [json.loads(r.value) for r in read_topic(kafka_bootstrap, topics.outbound)]
    assert {e["id"] for e in outbound} == accepted
    sequences: dict[str, list[int]] = defaultdict(list)
    for event in outbound:  # in partition order; a subject lives in one partition
        seen = sequences[event["subject"]]
        if event["sequence"] not in seen:  # a repeat after the failover is a replay
            seen.append(event["sequence"])
    for subject, seen in sequences.items():
        assert seen == list(range(1, len(seen) + 1)), subject
    assert sum(len(seen) for seen in sequences.values()) == len(accepted)

    # Repeats: fewer than one full relay page per failover.
    repeated = repeats(kafka_bootstrap, topics)
    print(f"killed the relay holder at {at_kill} of {len(lines)} stored; repeats {repeated}")
    assert repeated < RELAY_PAGE * failovers, repeated
