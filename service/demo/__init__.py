"""Demo data (``lifecycle demo-data``): a deterministic, realistic stream of provider events.

Each provider gets a whole life story (applications, admission, deposit, violations,
deductions, exits, expulsions, re-applications), told with business times that only move
forward; the stories are then merged by time into one stream, one JSON line per Kafka
record. A small share of the records is deliberately bad (malformed) or re-sent
(duplicates), and some events break the rulebook (refused), so every outcome shows up.

Everything comes from one ``random.Random(seed)``: the same arguments give the same bytes.
The contact names and phone numbers are invented; they stand for personal data.
"""

from service.demo.stream import generate, records, write

__all__ = ["generate", "records", "write"]
