"""Operations: readiness checks and the Prometheus metrics of the read side."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from projections.model import ReadModel

log = logging.getLogger("lifecycle.api")

#: A readiness check: returns when fine, raises (any exception) when not.
Check = Callable[[], None]


def kafka_check(bootstrap: str, timeout: float = 1.0) -> Check:
    """Kafka is reachable when a TCP connection to one bootstrap server opens."""

    def check() -> None:
        errors: list[str] = []
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                    return
            except (OSError, ValueError) as exc:
                errors.append(f"{server.strip()}: {exc.__class__.__name__}")
        raise ConnectionError("no Kafka bootstrap server reachable (" + "; ".join(errors) + ")")

    return check


class ProjectionCollector(Collector):
    """Projection positions and lag from ``ReadModel.status()``, read at scrape time."""

    def __init__(self, read_model: ReadModel) -> None:
        self.read_model = read_model

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "lifecycle_view_status_up", "1 when the views' positions could be read from the store"
        )
        try:
            views = self.read_model.status()
        except Exception as exc:  # the store may be down; /metrics must still answer
            log.warning("projection status unavailable: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        lag = GaugeMetricFamily(
            "lifecycle_view_lag_events",
            "Notifications of the store not yet applied to the view",
            labels=["view"],
        )
        position = GaugeMetricFamily(
            "lifecycle_view_position", "Last notification id applied to the view", labels=["view"]
        )
        head = GaugeMetricFamily(
            "lifecycle_view_store_head", "The store's last notification id", labels=["view"]
        )
        for view in views:
            lag.add_metric([view.name], view.lag)
            position.add_metric([view.name], view.position)
            head.add_metric([view.name], view.head)
        yield lag
        yield position
        yield head


class Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families
