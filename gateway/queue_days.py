"""What a stored row keeps of its times once it is done with: only the UTC day.

Delivered, withheld and rejected rows keep the day they were received and done with, not the moment (what a
stolen card shows; README, threat model). The queue, its rejects and its migrations all cut times the same way,
so the rule and its SQL live here, once.
"""

from __future__ import annotations

DAY = 86400.0  # delivered rows keep their times only to the UTC day (what a stolen card shows; README)
_DAY_SQL = "CAST({0} / 86400 AS INTEGER) * 86400.0"  # that day's start, in SQL (times are positive)


_ACK_SQL = (
    "UPDATE readings SET state = 1, done_at = ?, reason = NULL, echo = NULL, next_at = 0, "
    f"created_at = {_DAY_SQL.format('created_at')} WHERE id = ?"
)


# Withheld (never sent): like an ack, the row keeps only the day it was received and withheld (README, threat
# model). Parameters: state, done_at (the day), reason, id.
_WITHHOLD_SQL = (
    "UPDATE readings SET state = ?, done_at = ?, reason = ?, echo = NULL, next_at = 0, "
    f"created_at = {_DAY_SQL.format('created_at')} WHERE id = ?"
)


def _day(t: float) -> float:
    return t - t % DAY
