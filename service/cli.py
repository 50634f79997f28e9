"""The ``lifecycle`` command line."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lifecycle.contract import payload_json_schemas
from lifecycle.evaluate import evaluate, today_in_shanghai

app = typer.Typer(
    help="Provider lifecycle service: judge, record, publish and project provider events.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _parse_day(value: str | None) -> date:
    if value is None:
        return today_in_shanghai(datetime.now(UTC))
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
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        return
    _print_report(report, day)


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
    out: Annotated[Path, typer.Argument(help="directory to write <type>.schema.json into")],
) -> None:
    """Export the JSON Schemas of the envelope and every payload."""
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in payload_json_schemas().items():
        (out / f"{name}.schema.json").write_text(
            json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        )
    console.print(f"wrote {len(payload_json_schemas())} schemas to {out}")


def main() -> None:  # pragma: no cover - console script entry
    app()
