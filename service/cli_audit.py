"""``lifecycle audit``: verify, seal, history and export, for auditors and compliance.

Wired into the main CLI with ``app.add_typer(audit_app, name="audit")``::

    lifecycle audit verify [--uscc X] [--seals FILE] [--json]   exit 1 when anything is broken
    lifecycle audit seal [--daily] [--label L] [--export FILE] [--no-seal] [--json]
    lifecycle audit history USCC [--as-of D] [--json]
    lifecycle audit export OUT [--since D] [--until D] [--format jsonl|csv]
                               [--include-personal-data]
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from audit.auditing import NoHashChain, audit_store
from audit.history import Format, export, history
from audit.seal import SealRefused, seal, stored_seals
from audit.verify import Report, read_seals, verify, write_seals
from lifecycle.application import ProviderLifecycle
from lifecycle.rules import BUSINESS_TZ
from lifecycle.uscc import uscc_error
from service.bootstrap import Bootstrap
from store.audit_port import AuditStore

audit_app = typer.Typer(
    help="Auditors: verify the hash chain and the seals, replay a provider's history, export.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

OUTCOME_STYLE = {
    "accepted": "green",
    "refused": "yellow",
    "malformed": "red",
    "duplicate": "dim",
}


def _open() -> tuple[ProviderLifecycle, AuditStore]:
    lifecycle = Bootstrap().lifecycle
    try:
        return lifecycle, audit_store(lifecycle)
    except NoHashChain as exc:
        err.print(str(exc))
        raise typer.Exit(2) from exc


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter("expected YYYY-MM-DD", param_hint=option) from exc


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def _print_report(report: Report, what: str) -> None:
    if report.ok:
        console.print(
            f"[green]✓ intact[/]: {report.checked:,} events in {report.streams:,} streams"
            f"{what}, {report.seals} seals checked"
        )
        return
    table = Table(
        title=f"[red]✗ {len(report.broken)} broken[/] ({report.checked:,} events checked)"
    )
    table.add_column("uscc / record", no_wrap=True)
    table.add_column("sequence", justify="right")
    table.add_column("kind")
    table.add_column("reason", ratio=1)
    table.add_column("stream", overflow="fold")
    for b in report.broken:
        table.add_row(
            b.uscc or "",
            "" if b.sequence is None else str(b.sequence),
            b.kind,
            b.reason,
            b.stream or "",
        )
    console.print(table)


@audit_app.command("verify")
def verify_command(
    uscc: Annotated[
        str | None, typer.Option("--uscc", help="only this provider's streams (no seal check)")
    ] = None,
    seals: Annotated[
        Path | None,
        typer.Option("--seals", help="seals exported earlier (kept off-system) to check against"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON report")] = False,
) -> None:
    """Recompute every event's hash and check the chain and the seals; exit 1 if broken."""
    _, store = _open()
    exported = read_seals(seals) if seals is not None else None
    report = verify(store, uscc, exported)
    if as_json:
        _print_json(report.as_dict())
    else:
        _print_report(report, f" of {uscc}" if uscc else "")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("seal")
def seal_command(
    export_to: Annotated[
        Path | None,
        typer.Option("--export", help="write every seal to FILE (JSON lines) to keep off-system"),
    ] = None,
    daily: Annotated[
        bool, typer.Option("--daily", help="do nothing if today's (business day) seal exists")
    ] = False,
    label: Annotated[
        str | None, typer.Option("--label", help="default: the business day (Asia/Shanghai)")
    ] = None,
    no_seal: Annotated[
        bool, typer.Option("--no-seal", help="only export the existing seals")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify the store, then seal every stream's head (a Merkle root); exit 1 if broken."""
    _, store = _open()
    made = None
    if not no_seal:
        try:
            made = seal(store, label=label, daily=daily)
        except SealRefused as refused:
            if as_json:
                _print_json({"sealed": None, "verify": refused.report.as_dict()})
            else:
                err.print("[red]not sealed[/]: the store does not verify")
                _print_report(refused.report, "")
            raise typer.Exit(1) from None
    exported = write_seals(stored_seals(store), export_to) if export_to is not None else None
    if as_json:
        _print_json({"sealed": made.as_dict() if made else None, "exported": exported})
        return
    if made is not None:
        console.print(
            f"sealed #{made.seq} ({made.label}): {made.streams:,} streams, {made.events:,} "
            f"events up to notification {made.max_notification_id}, root {made.root}"
        )
    elif not no_seal:
        console.print("today's seal exists already")
    if export_to is not None:
        console.print(f"wrote {exported} seals to {export_to}")


@audit_app.command("history")
def history_command(
    uscc: Annotated[str, typer.Argument(help="the provider's USCC")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="only what happened by YYYY-MM-DD (business date)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every inbound record of a provider in order: accepted, refused, duplicate, malformed."""
    problem = uscc_error(uscc)
    if problem:
        err.print(f"not a valid USCC: {problem}")
        raise typer.Exit(2)
    lifecycle, store = _open()
    result = history(lifecycle, store, uscc, _day(as_of, "--as-of"))
    if as_json:
        _print_json(result)
        return
    _print_timeline(result)


def _local(moment: str | None) -> str:
    """An RFC 3339 time as Asia/Shanghai ``YYYY-MM-DD HH:MM`` (as given if unreadable)."""
    if not moment:
        return ""
    try:
        return datetime.fromisoformat(moment).astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return moment


def _print_timeline(result: dict[str, Any]) -> None:
    title = f"History of {result['uscc']}"
    if result["as_of"]:
        title += f" as of {result['as_of']}"
    table = Table(title=title, caption="times in Asia/Shanghai", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("business time", no_wrap=True)
    table.add_column("recorded", no_wrap=True)
    table.add_column("outcome")
    table.add_column("type")
    table.add_column("seq", justify="right")
    table.add_column("id", overflow="fold")
    table.add_column("codes / reason", overflow="fold", ratio=1)
    for e in result["entries"]:
        outcome = e["outcome"]
        note = " ".join(e["codes"])
        if e["reason"]:
            note = f"{note}: {e['reason']}" if note else e["reason"]
        if e.get("duplicate_of"):
            note = f"repeats sequence {e['duplicate_of']}"
        if e.get("resubmissions"):
            note += f" (re-submitted {len(e['resubmissions'])}x)"
        table.add_row(
            str(e["notification"]),
            _local(e["time"]),
            _local(e["recorded_at"]),
            f"[{OUTCOME_STYLE.get(outcome, 'white')}]{outcome}[/]",
            (e["type"] or "").removeprefix("provider."),
            "" if e["sequence"] is None else str(e["sequence"]),
            e["id"] or "",
            note,
        )
    console.print(table)
    checked = result["verify"]
    if checked["ok"]:
        console.print(f"[green]✓ hash chain intact[/] ({checked['checked']} events)")
    else:
        for b in checked["broken"]:
            console.print(f"[red]✗ sequence {b['sequence']}[/]: {b['reason']}")


@audit_app.command("export")
def export_command(
    out: Annotated[Path, typer.Argument(help="file to write")],
    since: Annotated[str | None, typer.Option("--since", help="business date YYYY-MM-DD")] = None,
    until: Annotated[str | None, typer.Option("--until", help="business date YYYY-MM-DD")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    include_personal_data: Annotated[
        bool,
        typer.Option(
            "--include-personal-data",
            help="contacts in clear and the records' original bytes (default: masked / left out)",
        ),
    ] = False,
) -> None:
    """Stream every recorded event and inbound record (refusals too) to a file."""
    if fmt not in ("jsonl", "csv"):
        raise typer.BadParameter("jsonl or csv", param_hint="--format")
    export_format: Format = "csv" if fmt == "csv" else "jsonl"
    first, last = _day(since, "--since"), _day(until, "--until")
    lifecycle, _ = _open()
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("export", total=None)
        count = export(
            lifecycle,
            out,
            export_format,
            first,
            last,
            include_personal_data=include_personal_data,
            on_start=lambda total: progress.update(task, total=total),
            on_progress=lambda n: progress.advance(task, n),
        )
    err.print(f"wrote {count:,} rows to {out}")
