"""The write side's persistence: the ``eventsourcing`` recorders this service writes with.

``store.sqlite`` (embedded default), ``store.postgres`` (production) and ``store.memory``
(tests) implement :class:`lifecycle.ports.PositionedRecorder` and the audit port
(``store.audit_port``): Kafka positions and the hash chain in the events' transaction.
"""
