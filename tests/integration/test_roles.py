"""Roles on real PostgreSQL and Kafka: single-active relay and projector, the SQLite lock.

Two ``lifecycle run --role <role>,api`` processes on one store: one holds the role's lease
(``/readyz`` says ``holding``; PostgreSQL shows its advisory lock on the holder's lease
connection), the other stands by; the holder killed with SIGKILL (or its lease connection
terminated) → the standby takes over within seconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import psycopg
import pytest

from store.lease import lease_key
from tests.integration.harness import LIFECYCLE, Service, Topics, wait_for

pytestmark = pytest.mark.integration

TAKEOVER_SECONDS = 10.0


def role_state(env: dict[str, str], role: str) -> str | None:
    """This process's state of ``role`` from its ``/readyz`` (None: not answering yet)."""
    try:
        answer = httpx.get(
            f"http://{env['LIFECYCLE_HTTP_BIND']}/readyz",
            headers={"Authorization": "Bearer it-reader"},
            timeout=5,
        )
    except httpx.HTTPError:
        return None
    body = answer.json()
    roles = body.get("roles") or body.get("error", {}).get("roles") or {}
    state = roles.get(role)
    return None if state is None else str(state)


def holders(store: str, role: str) -> list[str]:
    """The application names of the sessions holding ``role``'s advisory lock (a bigint key
    shows in ``pg_locks`` as classid = its high and objid = its low 32 bits)."""
    key = lease_key(role)
    with psycopg.connect(store, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = ((%s::bigint >> 32) & 4294967295)::bigint::oid "
            "AND l.objid = (%s::bigint & 4294967295)::bigint::oid",
            (key, key),
        ).fetchall()
    return [str(r[0]) for r in rows]


def pid_of(service: Service) -> int:
    assert service.process is not None
    return service.process.pid


def start_pair(
    kafka_bootstrap: str, store: str, topics: Topics, tmp_path: Path, role: str
) -> list[tuple[Service, dict[str, str]]]:
    pair = []
    for n in (1, 2):
        env = topics.env(kafka_bootstrap, store)
        pair.append((Service(env, tmp_path / f"run-{n}.log", role=f"{role},api").start(), env))
    return pair


def states(pair: list[tuple[Service, dict[str, str]]], role: str) -> list[str | None]:
    for service, _ in pair:
        service.assert_alive()
    return [role_state(env, role) for _, env in pair]


@pytest.mark.parametrize("role", ["relay", "project"])
def test_one_holder_the_other_stands_by_and_takes_over_after_sigkill(
    kafka_bootstrap: str, postgres_store: str, topics: Topics, tmp_path: Path, role: str
) -> None:
    topics.create(kafka_bootstrap)
    pair = start_pair(kafka_bootstrap, postgres_store, topics, tmp_path, role)
    try:
        wait_for(
            lambda: sorted(map(str, states(pair, role))) == ["holding", "standby"],
            60,
            f"one {role} holding, the other standing by",
        )
        holder, standby = pair if states(pair, role)[0] == "holding" else pair[::-1]
        assert holders(postgres_store, role) == [f"lifecycle-lease:{role}:{pid_of(holder[0])}"]
        assert f"{role}: holding the lease" in holder[0].log.read_text()
        assert f"{role}: standby (another process holds the lease)" in standby[0].log.read_text()

        holder[0].kill()
        wait_for(
            lambda: role_state(standby[1], role) == "holding",
            TAKEOVER_SECONDS,
            f"the standby {role} taking over",
        )
        standby[0].assert_alive()
        assert holders(postgres_store, role) == [f"lifecycle-lease:{role}:{pid_of(standby[0])}"]
        # The new holder works: ready (the role's check passes), not restarting.
        wait_for(
            lambda: (
                httpx.get(
                    f"http://{standby[1]['LIFECYCLE_HTTP_BIND']}/readyz",
                    headers={"Authorization": "Bearer it-reader"},
                    timeout=5,
                ).status_code
                == 200
            ),
            30,
            "the new holder ready",
        )
    finally:
        for service, _ in pair:
            if service.process is not None and service.process.poll() is None:
                assert service.stop() == 0, service.log.read_text()[-3000:]


def test_a_holder_whose_lease_connection_breaks_stops_and_stands_by(
    kafka_bootstrap: str, postgres_store: str, topics: Topics, tmp_path: Path
) -> None:
    topics.create(kafka_bootstrap)
    pair = start_pair(kafka_bootstrap, postgres_store, topics, tmp_path, "relay")
    try:
        wait_for(
            lambda: sorted(map(str, states(pair, "relay"))) == ["holding", "standby"],
            60,
            "one relay holding, the other standing by",
        )
        holder, _ = pair if states(pair, "relay")[0] == "holding" else pair[::-1]
        name = f"lifecycle-lease:relay:{pid_of(holder[0])}"
        with psycopg.connect(postgres_store, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            ).fetchall()
        assert killed == [(True,)]
        wait_for(
            lambda: "relay: lost the lease; stopped, standing by" in holder[0].log.read_text(),
            TAKEOVER_SECONDS,
            "the holder noticing its lease is gone",
        )
        # Someone holds it again (either process may win the next try), and only one.
        seen: list[object] = []

        def one_holder_again() -> bool:
            now = (holders(postgres_store, "relay"), states(pair, "relay"))
            seen[:] = [now]
            return len(now[0]) == 1 and sorted(map(str, now[1])) == ["holding", "standby"]

        try:
            wait_for(one_holder_again, TAKEOVER_SECONDS, "exactly one relay holding again")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen (holders, states): {seen}") from None
        for service, _ in pair:
            service.assert_alive()
    finally:
        for service, _ in pair:
            if service.process is not None and service.process.poll() is None:
                assert service.stop() == 0, service.log.read_text()[-3000:]


def test_a_second_run_on_one_sqlite_file_refuses_to_start(
    kafka_bootstrap: str, sqlite_store: str, topics: Topics, tmp_path: Path
) -> None:
    env = topics.env(kafka_bootstrap, sqlite_store)
    first = Service(env, tmp_path / "first.log").start()
    try:
        wait_for(
            lambda: first.assert_alive() or role_state(env, "relay") == "holding",
            60,
            "the first process up (holding the relay on SQLite)",
        )
        second_env = topics.env(kafka_bootstrap, sqlite_store)
        second = subprocess.run(
            [LIFECYCLE, "run"], env=second_env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2, second.stderr
        assert "already uses the SQLite store" in second.stderr
        assert f"pid {pid_of(first)}" in second.stderr
        first.assert_alive()
    finally:
        assert first.stop() == 0, first.log.read_text()[-3000:]
