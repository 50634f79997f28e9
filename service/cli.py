"""The ``lifecycle`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from rich.table import Table

from lifecycle.evaluate import evaluate
from lifecycle.inbox import NotResubmittable, RecordNotFound
from lifecycle.rules import business_date
from lifecycle.schemas import json_schemas
from service.bootstrap import Bootstrap
from service.cli_audit import audit_app
from service.cli_projections import projections_app
from service.settings import Settings

app = typer.Typer(
    help="Provider lifecycle service: judge, record, publish and project provider events.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _parse_day(value: str | None) -> date:
    if value is None:
        return business_date(datetime.now(UTC))
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter("expected YYYY-MM-DD") from exc


@app.command("evaluate")
def evaluate_command(
    events: Annotated[Path, typer.Argument(help="CloudEvents, one JSON object per line, in order")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: today in Asia/Shanghai)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the CONTRACT.md JSON")] = False,
) -> None:
    """Judge a file of events offline with the same rules as the live service."""
    day = _parse_day(as_of)
    try:
        with events.open("rb") as handle:
            report = evaluate(handle, day)
    except OSError as exc:
        print(f"lifecycle evaluate: cannot read {events}: {exc.strerror}", file=sys.stderr)
        raise typer.Exit(2) from exc
    if as_json:
        _write_json(report)
        return
    _print_report(report, day)


def _write_json(report: dict[str, Any]) -> None:
    """The report as one line of JSON, whatever text it holds (CONTRACT.md: always printed)."""
    try:
        data = json.dumps(report, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate somewhere: escape it rather than fail
        data = json.dumps(report, ensure_ascii=True).encode("ascii")
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # a text-only stdout: ASCII is safe in any encoding
        sys.stdout.write(json.dumps(report, ensure_ascii=True) + "\n")
        return
    sys.stdout.flush()
    out.write(data + b"\n")
    out.flush()


def _print_report(report: dict[str, Any], day: date) -> None:
    outcomes = Table(title="Outcomes", show_lines=False)
    for column in ("#", "id", "outcome", "codes", "reason"):
        outcomes.add_column(column)
    colours = {"accepted": "green", "refused": "yellow", "malformed": "red", "duplicate": "dim"}
    for n, entry in enumerate(report["outcomes"], start=1):
        outcome = entry["outcome"]
        outcomes.add_row(
            str(n),
            str(entry["id"]),
            f"[{colours[outcome]}]{outcome}[/]",
            ", ".join(entry.get("codes", [])),
            entry.get("reason") or "",
        )
    console.print(outcomes)
    providers = Table(title=f"Providers as of {day}")
    for column in (
        "USCC",
        "status",
        "deposit (fen)",
        "violations",
        "can apply",
        "from",
        "clause",
        "reason",
    ):
        providers.add_column(column)
    for uscc, p in report["providers"].items():
        e = p["eligibility"]
        providers.add_row(
            uscc,
            str(p["status"]),
            str(p["deposit_balance_fen"]),
            str(p["violations"]),
            {True: "yes", False: "no", None: "manual review"}[e["can_apply"]],
            e["from"] or "",
            e["clause"] or "",
            e["reason"],
        )
    console.print(providers)


@app.command("schemas")
def schemas_command(
    out: Annotated[Path, typer.Argument(help="directory to write <name>.schema.json into")],
) -> None:
    """Write the JSON Schemas (draft 2020-12): the inbound envelope, every payload version,
    the outbound event and the refused record (CONTRACT.md, "Machine-readable contract")."""
    out.mkdir(parents=True, exist_ok=True)
    schemas = json_schemas()
    for name, schema in schemas.items():
        (out / f"{name}.schema.json").write_text(
            json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        )
    console.print(f"wrote {len(schemas)} schemas to {out}")


@app.command("run")
def run_command(
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="comma-separated roles: ingest, relay, project, api "
            "(default: LIFECYCLE_ROLES, else all four)",
        ),
    ] = None,
) -> None:
    """The service: consume, judge, store, relay, project and serve HTTP until SIGTERM.

    ``relay`` and ``project`` run in one process per store at a time (a lease; the others
    stand by and take over). On SQLite one ``lifecycle run`` per file: a second exits 2.
    """
    from service.roles import parse_roles
    from service.runner import serve
    from store.lease import StoreInUse

    settings = Settings() if role is None else Settings(roles=role)
    try:
        parse_roles(settings.roles)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--role") from exc
    _logging()
    try:
        asyncio.run(serve(settings))
    except StoreInUse as exc:
        print(f"lifecycle run: {exc}", file=sys.stderr)
        raise typer.Exit(2) from exc


@app.command("produce")
def produce_command(
    file: Annotated[Path, typer.Argument(help="one record per line")],
    topic: Annotated[str | None, typer.Option("--topic", help="default: the inbound topic")] = None,
) -> None:
    """Publish each line to the inbound topic, key = its subject."""
    from consumers.producer import key_of, produce
    from consumers.topics import ensure_topics

    settings = Settings()
    target = topic or settings.inbound_topic
    lines = [line.rstrip(b"\r\n") for line in file.read_bytes().splitlines() if line.strip()]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"producing to {target}", total=len(lines))

        async def go() -> int:
            await ensure_topics(settings.kafka_bootstrap, {target: settings.partitions})
            return await produce(
                settings.kafka_bootstrap,
                target,
                ((key_of(line), line, []) for line in lines),
                on_sent=lambda n: progress.advance(task, n),
            )

        sent = asyncio.run(go())
    print(f"sent {sent} records to {target}")


@app.command("stats")
def stats_command(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="refresh every second")] = False,
) -> None:
    """Outcome counts from the store (consumed = accepted + refused + malformed + duplicate)."""
    lifecycle = Bootstrap().lifecycle
    if as_json:
        sys.stdout.write(json.dumps(lifecycle.stats()) + "\n")
        return

    def table() -> Table:
        counts = lifecycle.stats()
        view = Table(title="Inbound records")
        for name in counts:
            view.add_column(name, justify="right")
        view.add_row(*(f"{n:,}" for n in counts.values()))
        return view

    if not follow:
        console.print(table())
        return
    with Live(table(), console=console, refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(1)
                live.update(table())
        except KeyboardInterrupt:
            pass


app.add_typer(projections_app, name="projections")
app.add_typer(audit_app, name="audit")

inbox = typer.Typer(help="Refused and malformed records: list and re-submit.", no_args_is_help=True)
app.add_typer(inbox, name="inbox")


@inbox.command("list")
def inbox_list(
    outcome: Annotated[str | None, typer.Option(help="refused or malformed")] = None,
    code: Annotated[str | None, typer.Option(help="a clause code, e.g. A1.3-5")] = None,
    subject: Annotated[str | None, typer.Option(help="a USCC")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List records that were not accepted, with their reasons."""
    with Bootstrap() as deps:
        entries = [e.as_dict() for e in deps.inbox.entries(outcome, code, subject)]
    if as_json:
        sys.stdout.write(json.dumps(entries, ensure_ascii=False) + "\n")
        return
    view = Table(title=f"Inbox ({len(entries)})")
    for column in ("record", "outcome", "id", "subject", "codes", "reason", "resubmitted"):
        view.add_column(column)
    for e in entries:
        view.add_row(
            e["record"],
            e["outcome"],
            str(e["id"]),
            str(e["subject"]),
            ", ".join(e["codes"]),
            e["reason"] or "",
            f"{e['resubmissions']} (in flight)" if e["in_flight"] else str(e["resubmissions"]),
        )
    console.print(view)


@inbox.command("resubmit")
def inbox_resubmit(
    record: Annotated[str | None, typer.Argument(help="a record id from `inbox list`")] = None,
    all_matching: Annotated[
        bool, typer.Option("--all", help="every record matching the filters")
    ] = False,
    outcome: Annotated[str | None, typer.Option(help="refused or malformed")] = None,
    code: Annotated[str | None, typer.Option(help="a clause code")] = None,
    subject: Annotated[str | None, typer.Option(help="a USCC")] = None,
) -> None:
    """Send records back to the inbound topic (after an upstream fix) to be judged again.

    A record whose last re-submission has not come back yet cannot be re-submitted again:
    exit 2 for RECORD_ID; ``--all`` leaves such records out and says how many.
    """
    if record is None and not all_matching:
        raise typer.BadParameter("give a record id or --all with filters")
    with Bootstrap() as deps:
        inbox = deps.inbox
        try:
            if record is not None:
                chosen = [inbox.find(_record_id(record))]
            else:
                entries = list(inbox.entries(outcome, code, subject))
                chosen = [inbox.find(e.record_id) for e in entries if not e.in_flight]
                if len(chosen) < len(entries):
                    print(
                        f"lifecycle inbox resubmit: left out {len(entries) - len(chosen)} "
                        "records whose re-submission has not come back yet",
                        file=sys.stderr,
                    )
            sent = inbox.resubmit(chosen, by="cli")
        except (RecordNotFound, NotResubmittable) as exc:  # incl. AlreadyResubmitted
            print(f"lifecycle inbox resubmit: {exc}", file=sys.stderr)
            raise typer.Exit(2) from exc
    print(f"re-submitted {sent} records to {deps.settings.inbound_topic}")


def _record_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError as exc:
        raise typer.BadParameter("an inbox record id is a UUID") from exc


@app.command("demo-data")
def demo_data_command(
    out: Annotated[Path, typer.Argument(help="JSONL file to write")],
    providers: Annotated[int, typer.Option(help="number of providers")] = 2000,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """Generate a realistic sample stream (full lifecycles, refusals, malformed records)."""
    from service.demo import write

    count = write(out, providers, seed)
    print(f"wrote {count} records for {providers} providers to {out}")


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def main() -> None:  # pragma: no cover - console script entry
    app()
