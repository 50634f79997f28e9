"""``lifecycle projections …``: status, rebuild (with switch-over), verify, catch-up, run.

Wired into the main CLI with ``app.add_typer(projections_app, name="projections")``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from consumers.relay import relay_set_aside
from lifecycle.application import ProviderLifecycle
from projections.database import ViewDatabase, ViewsBusy
from projections.projector import Projector
from projections.rebuild import Difference, rebuild, status_report, verify
from service.bootstrap import Bootstrap

projections_app = typer.Typer(
    help="The read-side views: status and lag, rebuild with switch-over, verify.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


@contextmanager
def _store() -> Iterator[tuple[ProviderLifecycle, ViewDatabase]]:
    with Bootstrap() as deps:
        yield deps.lifecycle, deps.views


class RateColumn(ProgressColumn):
    """Events per second (notifications of the store's log applied per second)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "… events/s", style="cyan")


def _progress(quiet: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
    )


@projections_app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    show: Annotated[int, typer.Option(help="set-aside notifications to list")] = 20,
) -> None:
    """Each view's position, the store's head and the lag, per generation; and the
    notifications the projector or the relay set aside (could not project or publish)."""
    with _store() as (app, db):
        report = status_report(app, db, set_aside_limit=max(show, 0) if not as_json else 100)
        report["relay"] = relay_set_aside(app, limit=max(show, 0) if not as_json else 100)
    if as_json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        return
    table = Table(
        title=f"Views (store head {report['head']:,}, live generation {report['live_generation']})"
    )
    for column in ("generation", "state", "view", "position", "head", "lag"):
        table.add_column(
            column, justify="right" if column in ("position", "head", "lag") else "left"
        )
    for v in report["views"]:
        lag = v["lag"]
        table.add_row(
            str(v["generation"]),
            v["state"],
            v["view"],
            f"{v['position']:,}",
            f"{v['head']:,}",
            f"[{'green' if lag == 0 else 'yellow'}]{lag:,}[/]",
        )
    console.print(table)
    _print_set_aside(
        f"Set aside by the projector: {report['set_aside_total']:,}",
        ("generation", "notification", "topic", "error", "at"),
        [
            (str(e["generation"]), str(e["notification_id"]), e["topic"], e["error"], e["at"])
            for e in report["set_aside"]
        ],
    )
    relay = report["relay"]
    if relay["set_aside_total"] is not None:
        _print_set_aside(
            f"Set aside by the relay ({relay['name']}): {relay['set_aside_total']:,}",
            ("notification", "topic", "reason", "at"),
            [
                (str(e["notification_id"]), e["topic"], e["reason"], e["at"])
                for e in relay["set_aside"]
            ],
        )


def _print_set_aside(title: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        console.print(f"[green]{title}[/]")
        return
    table = Table(title=f"[red]{title}[/] (latest {len(rows)})")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_short(v if v is not None else "-", 80) for v in row))
    console.print(table)


@projections_app.command("rebuild")
def rebuild_command(
    batch_size: Annotated[int, typer.Option(help="notifications per transaction")] = 1000,
    keep: Annotated[int, typer.Option(help="previous generations to keep")] = 1,
) -> None:
    """Rebuild every view from the whole history into new tables, then switch readers
    over (no downtime: the live views keep serving until the switch)."""
    with _store() as (app, db), _progress() as progress:
        task = progress.add_task("rebuilding views", total=None)

        def report(position: int, head: int) -> None:
            progress.update(task, completed=position, total=max(head, position))

        try:
            result = rebuild(app, db, batch_size=batch_size, progress=report, keep=keep)
        except ViewsBusy as exc:
            err_console.print(f"[red]lifecycle projections rebuild: {exc}[/]")
            raise typer.Exit(2) from exc
        progress.update(task, completed=result.position, total=max(result.position, 1))
    console.print(
        f"generation {result.generation} built: {result.notifications:,} events in "
        f"{result.seconds:.1f} s ({result.rate:,.0f} events/s), position {result.position:,}; "
        f"readers switched from generation {result.previous}"
    )


def _short(value: Any, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _describe(column: str, live: Any, rebuilt: Any) -> list[tuple[str, str, str]]:
    """One line per differing column; JSON documents are compared key by key."""
    if isinstance(live, str) and isinstance(rebuilt, str) and live[:1] in "{[":
        try:
            a, b = json.loads(live), json.loads(rebuilt)
        except ValueError:
            a = b = None
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            return [(f"{column}.{k}", _short(a.get(k)), _short(b.get(k))) for k in keys]
    return [(column, _short(live), _short(rebuilt))]


def _print_differences(differences: list[Difference], show: int) -> None:
    summary = Table(title="Differences by table (live ≠ rebuilt)")
    for column in ("table", "kind", "rows"):
        summary.add_column(column)
    counts = Counter((diff.table, diff.kind) for diff in differences)
    for (name, kind), n in sorted(counts.items()):
        summary.add_row(name, kind, f"{n:,}")
    console.print(summary)
    shown = differences[:show]
    title = f"First {len(shown)} of {len(differences)} differences"
    table = Table(title=title)
    for column in ("table", "key", "kind", "column", "live", "rebuilt"):
        table.add_column(column)
    for diff in shown:
        key = ", ".join(f"{k}={v}" for k, v in diff.as_dict()["key"].items())
        if not diff.columns:
            table.add_row(diff.table, key, diff.kind, "", "", "")
        for name, (live, rebuilt) in diff.columns.items():
            for col, a, b in _describe(name, live, rebuilt):
                table.add_row(diff.table, key, diff.kind, col, a, b)
    console.print(table)


@projections_app.command("verify")
def verify_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    batch_size: Annotated[int, typer.Option(help="notifications per transaction")] = 1000,
    limit: Annotated[int, typer.Option(help="stop after this many differences")] = 1000,
    show: Annotated[int, typer.Option(help="differences to print in full")] = 30,
) -> None:
    """Rebuild every view into scratch tables and compare them with the live views row by
    row; exit status 1 on any difference."""
    with _store() as (app, db), _progress(quiet=as_json) as progress:
        task = progress.add_task("rebuilding into scratch tables", total=None)

        def report(position: int, head: int) -> None:
            progress.update(task, completed=position, total=max(head, position))

        try:
            result = verify(app, db, batch_size=batch_size, progress=report, limit=limit)
        except ViewsBusy as exc:
            err_console.print(f"[red]lifecycle projections verify: {exc}[/]")
            raise typer.Exit(2) from exc
        progress.update(task, completed=result.position, total=max(result.position, 1))
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), ensure_ascii=False) + "\n")
    elif result.ok:
        rows = sum(result.rows.values())
        console.print(
            f"[green]ok[/]: generation {result.generation} at position {result.position:,} "
            f"equals a rebuild ({rows:,} rows compared)"
        )
    else:
        _print_differences(result.differences, show)
        more = " (stopped at --limit)" if result.truncated else ""
        console.print(
            f"[red]{len(result.differences)} differences{more}[/] between generation "
            f"{result.generation} and a rebuild at position {result.position:,}"
        )
    if not result.ok:
        raise typer.Exit(1)


@projections_app.command("catch-up")
def catch_up_command(
    batch_size: Annotated[int, typer.Option(help="notifications per transaction")] = 1000,
) -> None:
    """Project the store's new events into the live views, then exit."""
    with _store() as (app, db):
        projector = Projector(app, db, batch_size=batch_size)
        try:
            n = projector.catch_up()
            position = projector.position
        finally:
            projector.close()
    console.print(f"applied {n:,} events; views at position {position:,}")


@projections_app.command("run")
def run_command(
    batch_size: Annotated[int, typer.Option(help="notifications per transaction")] = 1000,
) -> None:
    """Follow the store into the live views until SIGTERM / Ctrl-C."""

    async def go(projector: Projector) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await projector.run(stop)

    with _store() as (app, db):
        asyncio.run(go(Projector(app, db, batch_size=batch_size)))
