"""The stories merged by business time into one stream of Kafka records, some bad on purpose."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from lifecycle.rules import DEPOSIT_FEN
from lifecycle.uscc import ALPHABET
from service.demo.catalogue import (
    CITIES,
    CST,
    END,
    SOURCE,
    Outcome,
    random_application,
    random_company,
    random_uscc,
)
from service.demo.story import Planned, Story


def plan(rng: random.Random, providers: int, start: date) -> list[Planned]:
    """Every provider's story, merged by business time."""
    if start >= END - timedelta(days=60):
        raise ValueError(f"start must be before {END - timedelta(days=60)}")
    span = (END - start).days - 45
    usccs: set[str] = set()
    companies: set[str] = set()
    planned: list[Planned] = []
    for index in range(providers):
        city = rng.choice(CITIES)
        uscc = random_uscc(rng, city)
        while uscc in usccs:
            uscc = random_uscc(rng, city)
        usccs.add(uscc)
        first = start + timedelta(days=rng.randint(0, span))
        story = Story(
            rng,
            index,
            uscc,
            city,
            random_application(rng, city, random_company(rng, city, companies), first),
            datetime.combine(first, time(0, 0), CST),
        )
        planned.extend(e for e in story.tell() if e.time.date() <= END)
    planned.sort(key=lambda e: (e.time, e.provider, e.seq))
    return planned


def envelope_of(ce_id: str, event: Planned) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": ce_id,
        "source": SOURCE,
        "type": event.type,
        "subject": event.subject,
        "time": event.time.isoformat(),
        "datacontenttype": "application/json",
        "data": copy.deepcopy(event.data),
    }


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def malformed(rng: random.Random, ce_id: str, event: Planned) -> bytes:
    """A broken record next to ``event``: one of the ways upstream gets it wrong."""
    envelope = envelope_of(ce_id, event)
    kind = rng.choice(
        ["invalid_json", "unknown_type", "bad_uscc", "naive_time", "negative_amount", "extra"]
    )
    if kind == "invalid_json":
        text = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        return text[: rng.randint(len(text) // 3, len(text) - 2)].encode("utf-8")
    if kind == "unknown_type":
        envelope["type"] = rng.choice(
            ["provider.Suspended", "provider.Renamed", "provider.DepositRefunded"]
        )
    elif kind == "bad_uscc":
        good = event.subject[17]
        envelope["subject"] = event.subject[:17] + rng.choice(ALPHABET.replace(good, ""))
    elif kind == "naive_time":
        envelope["time"] = event.time.replace(tzinfo=None).isoformat()
    elif kind == "negative_amount":
        envelope["type"] = "provider.DepositPaid"
        envelope["data"] = {
            "amount_fen": -DEPOSIT_FEN,
            "payment_ref": f"DEP{rng.randint(10**11, 10**12 - 1)}",
        }
    else:
        envelope["data"]["remark"] = "补录"
    return dumps(envelope)


def records(
    providers: int, seed: int, start: date
) -> Iterator[tuple[bytes, Outcome, tuple[str, ...]]]:
    """Each record with the outcome (and refusal codes) the rulebook gives it."""
    rng = random.Random(seed)
    planned = plan(rng, providers, start)
    number = 0
    resends: list[tuple[int, bytes]] = []  # (emit before this index, the record's bytes)
    for index, event in enumerate(planned):
        while resends and resends[0][0] <= index:
            yield resends.pop(0)[1], "duplicate", ()
        number += 1
        line = dumps(envelope_of(f"demo-{number:07d}", event))
        yield line, event.outcome, event.codes
        if event.outcome == "accepted" and rng.random() < 0.005:
            # An exact re-send of an accepted record, a little later in the stream.
            resends.append((index + rng.randint(1, 60), line))
            resends.sort(key=lambda r: r[0])
        if rng.random() < 0.01:
            number += 1
            yield malformed(rng, f"demo-{number:07d}", event), "malformed", ()
    for _, line in resends:
        yield line, "duplicate", ()


def generate(
    providers: int = 2000, seed: int = 7, start: date = date(2024, 1, 1)
) -> Iterator[bytes]:
    """The demo stream: one JSON line per Kafka record (UTF-8, no trailing newline)."""
    for line, _, _ in records(providers, seed, start):
        yield line


def write(path: Path, providers: int, seed: int) -> int:
    """Write the demo stream to ``path``, one record a line; how many records."""
    count = 0
    with path.open("wb") as handle:
        for line in generate(providers, seed):
            handle.write(line + b"\n")
            count += 1
    return count
