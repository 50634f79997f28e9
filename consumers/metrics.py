"""Prometheus metrics of the Kafka side (served by the read API's ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OUTCOMES = Counter(
    "lifecycle_inbound_records_total", "Consumed inbound records by outcome", ["outcome"]
)
BATCH_SECONDS = Histogram(
    "lifecycle_inbound_batch_seconds",
    "Time to judge and store one inbound batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "lifecycle_consumer_lag_records", "Records behind the partition's end", ["topic", "partition"]
)
RELAY_POSITION = Gauge("lifecycle_relay_position", "Last notification id published by the relay")
RELAY_PUBLISHED = Counter("lifecycle_relay_published_total", "Records published", ["topic"])
