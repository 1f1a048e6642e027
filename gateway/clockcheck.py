"""Is a reading's device clock plausible? (issue 11, must-have 5: "a device clock far from plausible flags
the reading"). Pure: a reading and a limit in, a verdict out; the FHIR mapping, the daemon's health model
and its log all ask this one function, so they agree.

Implausible, the reading is flagged and kept (never dropped):
- the device clock was checked (clock_offset known) and was more than `limit` off the gateway's: beyond
  any time zone or daylight-saving slip, the clock was never set or was reset (battery change);
- the device time stamp is before EARLIEST_DEVICE_TIME: a factory-default or reset clock (common defaults
  are 1970-01-01, 2000-01-01, 2005-01-01), not a measurement;
- the measurement time, corrected where the offset is known, is after the gateway received it by more
  than `limit`: a clock that runs far ahead (a smaller lead, e.g. a daylight-saving slip on a device whose
  clock was never read, is within what the offset rule tolerates too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from gateway.reading import Reading

__all__ = ["DEFAULT_LIMIT", "EARLIEST_DEVICE_TIME", "ClockVerdict", "judge"]

DEFAULT_LIMIT = timedelta(days=1)
# Bluetooth LE (the BLE health profiles' transport) was adopted in 2010; serial meters still in use report
# years long after. A stamp before this is a default or a reset, never a reading of a patient today.
EARLIEST_DEVICE_TIME = datetime(2010, 1, 1)


@dataclass(frozen=True, slots=True)
class ClockVerdict:
    """Why the device clock is implausible: `problem` is a stable code, `detail` words without PHI."""

    problem: str  # "offset" | "before-2010" | "future"
    detail: str
    offset_known: bool


def _days(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    return f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} hours"


def judge(reading: Reading, limit: timedelta = DEFAULT_LIMIT, local_tz: tzinfo | None = None) -> ClockVerdict | None:
    """None when the clock is plausible or the device gave no time (the gateway's receive time is used)."""
    t = reading.device_time
    if t is None:
        return None
    known = reading.clock_offset is not None
    if reading.clock_offset is not None and abs(reading.clock_offset) > limit:
        way = "ahead of" if reading.clock_offset > timedelta(0) else "behind"
        return ClockVerdict("offset", f"the device clock was {_days(reading.clock_offset)} {way} the gateway's", True)
    if t.replace(tzinfo=None) < EARLIEST_DEVICE_TIME:
        return ClockVerdict("before-2010", "the device time stamp is before 2010 (a default or reset clock)", known)
    ahead = reading.effective_time(local_tz) - reading.received_at
    if ahead > limit:
        return ClockVerdict("future", f"the measurement time is {_days(ahead)} after the gateway received it", known)
    return None
