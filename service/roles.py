"""Roles of ``lifecycle run`` and their supervision.

``ingest`` (the inbound consumer), ``relay`` (notification log → Kafka), ``project`` (the
views and the daily seal) and ``api`` (the read API). Any subset runs in one process
(``--role`` / ``LIFECYCLE_ROLES``; default all four).

* :class:`Supervisor` runs one role's body until ``stop``: a body that fails (or returns
  on its own) is started again after a backoff growing from ``initial`` to ``cap``; after
  ``healthy_after`` seconds up again it is *recovered* and the backoff starts over. It
  logs each change of state (started, failed + backoff, recovered), at most
  ``max_logs_per_minute`` failure lines a minute (the rest are counted in the next one).
* :func:`run_leased` runs a single-active role (``relay``, ``project``) only while this
  process holds the role's :class:`~store.lease.Lease`: otherwise it stands by and tries
  again every ``retry`` seconds. A holder checks its lease every ``check_every`` seconds;
  when the lease is lost (its connection broke) the role is stopped at once (cancelled,
  not drained: another process may already hold the lease) and the process stands by.
* :class:`RoleBoard` holds each role's state for ``/readyz`` (``roles`` and one check per
  role, failing while the role waits to restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from store.lease import Lease

log = logging.getLogger("lifecycle.roles")

ROLES = ("ingest", "relay", "project", "api")
#: Single-active per store: run only by the holder of the role's lease.
LEASED = frozenset({"relay", "project"})

#: A role's work: runs until the event is set (then returns), raises on failure.
Body = Callable[[asyncio.Event], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


def parse_roles(value: str) -> tuple[str, ...]:
    """``"ingest,relay"`` → ``("ingest", "relay")`` in canonical order; unknown or no
    role raises ``ValueError``."""
    names = {part.strip() for part in value.split(",") if part.strip()}
    unknown = sorted(names - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}: choose from {', '.join(ROLES)}")
    if not names:
        raise ValueError(f"no role given: choose from {', '.join(ROLES)}")
    return tuple(role for role in ROLES if role in names)


class RoleBoard:
    """Each role's state in this process: ``running``, ``holding`` or ``standby``, and
    why it is failing, if it is (waiting to restart)."""

    def __init__(self, roles: tuple[str, ...] = ()) -> None:
        self._states: dict[str, str] = {
            role: "standby" if role in LEASED else "starting" for role in roles
        }
        self._failing: dict[str, str] = {}

    def set(self, role: str, state: str) -> None:
        self._states[role] = state

    def state(self, role: str) -> str | None:
        return self._states.get(role)

    def fail(self, role: str, reason: str) -> None:
        self._failing[role] = reason

    def ok(self, role: str) -> None:
        self._failing.pop(role, None)

    def snapshot(self) -> dict[str, str]:
        return dict(self._states)

    def checks(self) -> dict[str, Callable[[], None]]:
        """One readiness check per role: fails while the role waits to restart."""

        def check_for(role: str) -> Callable[[], None]:
            def check() -> None:
                reason = self._failing.get(role)
                if reason is not None:
                    raise RuntimeError(reason)

            return check

        return {role: check_for(role) for role in self._states}


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    #: Up this long again after a failure: recovered, the backoff starts over.
    healthy_after: float = 30.0
    max_logs_per_minute: int = 6


async def _pause(seconds: float, stop: asyncio.Event, sleep: Sleep) -> None:
    """``sleep(seconds)``, cut short when ``stop`` is set."""
    if stop.is_set():
        return
    sleeper = asyncio.ensure_future(sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            task.cancel()
        await asyncio.gather(sleeper, stopper, return_exceptions=True)


class Supervisor:
    """Runs ``body`` until ``stop``, restarting it with backoff when it fails."""

    def __init__(
        self,
        name: str,
        body: Body,
        board: RoleBoard | None = None,
        *,
        running_state: str = "running",
        backoff: Backoff = Backoff(),
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self.name = name
        self.body = body
        self.board = board
        self.running_state = running_state
        self.backoff = backoff
        self.sleep = sleep
        self.clock = clock
        self.log = logger
        self.attempts = 0
        self._window_start = -1e18
        self._logged_in_window = 0
        self._suppressed = 0

    async def run(self, stop: asyncio.Event) -> None:
        delay = self.backoff.initial
        failing = False
        while not stop.is_set():
            self.attempts += 1
            if self.board is not None:
                self.board.set(self.name, self.running_state)
            if self.attempts == 1:
                self.log.info("%s: started", self.name)
            body = asyncio.ensure_future(self.body(stop))
            watch: asyncio.Future[None] | None = None
            if failing:
                watch = asyncio.ensure_future(self.sleep(self.backoff.healthy_after))
            error: BaseException | None = None
            try:
                while True:
                    pending = {body} if watch is None else {body, watch}
                    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    if watch is not None and watch in done and body not in done:
                        watch = None
                        failing = False
                        delay = self.backoff.initial
                        self._recovered()
                        continue
                    break
                error = body.exception()
            except asyncio.CancelledError:
                body.cancel()
                with contextlib.suppress(BaseException):
                    await body
                raise
            finally:
                if watch is not None:
                    watch.cancel()
                    with contextlib.suppress(BaseException):
                        await watch
            if stop.is_set() and error is None:
                return
            if error is None:
                error = RuntimeError("returned without being stopped")
            failing = True
            self._failed(error, delay)
            await _pause(delay, stop, self.sleep)
            delay = min(delay * self.backoff.factor, self.backoff.cap)
        if self.board is not None:
            self.board.ok(self.name)

    def _recovered(self) -> None:
        if self.board is not None:
            self.board.ok(self.name)
        self.log.info("%s: recovered", self.name)

    def _failed(self, error: BaseException, delay: float) -> None:
        reason = f"{type(error).__name__}: {error}"[:300]
        if self.board is not None:
            self.board.fail(self.name, f"restarting after {reason}")
        now = self.clock()
        if now - self._window_start >= 60.0:
            self._window_start, self._logged_in_window = now, 0
        if self._logged_in_window >= self.backoff.max_logs_per_minute:
            self._suppressed += 1
            return
        self._logged_in_window += 1
        more = f" ({self._suppressed} more failures not logged)" if self._suppressed else ""
        self._suppressed = 0
        self.log.warning(
            "%s: failed (%s); restarting in %.1f s%s",
            self.name,
            reason,
            delay,
            more,
            exc_info=(type(error), error, error.__traceback__) if self.attempts == 1 else None,
        )


async def run_leased(
    name: str,
    lease: Lease,
    body: Body,
    board: RoleBoard,
    stop: asyncio.Event,
    *,
    retry: float = 1.0,
    check_every: float = 1.0,
    backoff: Backoff = Backoff(),
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    logger: logging.Logger = log,
) -> None:
    """Run ``body`` (supervised) while this process holds ``lease``; stand by otherwise."""
    state: str | None = None

    def change(new: str, message: str, *args: object) -> None:
        nonlocal state
        if new != state:
            state = new
            logger.log(logging.WARNING if new == "unreachable" else logging.INFO, message, *args)
        board.set(name, "holding" if new == "holding" else "standby")

    supervisor = Supervisor(
        name,
        body,
        board,
        running_state="holding",
        backoff=backoff,
        sleep=sleep,
        clock=clock,
        logger=logger,
    )
    try:
        while not stop.is_set():
            try:
                got = await lease.try_acquire()
            except Exception as exc:
                change("unreachable", "%s: standby, lease unreachable (%s)", name, exc)
                await _pause(retry, stop, sleep)
                continue
            if not got:
                change("standby", "%s: standby (another process holds the lease)", name)
                await _pause(retry, stop, sleep)
                continue
            change("holding", "%s: holding the lease", name)
            term = asyncio.Event()
            task = asyncio.ensure_future(supervisor.run(term))
            lost = False
            try:
                while not stop.is_set() and not task.done():
                    await _pause(check_every, stop, sleep)
                    if stop.is_set():
                        break
                    if not await lease.held():
                        lost = True
                        break
            finally:
                if lost or not stop.is_set():
                    task.cancel()  # another process may hold the lease already: no draining
                term.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            board.ok(name)
            if lost:
                change("lost", "%s: lost the lease; stopped, standing by", name)
                board.set(name, "standby")
    finally:
        await lease.release()
