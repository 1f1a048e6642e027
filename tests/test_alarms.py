"""The alarm board: raise, clear, ordering and the snapshot another process reads."""

from __future__ import annotations

import stat
from pathlib import Path

from gateway.alarms import AlarmBoard, Severity, read_snapshot


def test_raise_clear_and_snapshot_round_trip(tmp_path: Path) -> None:
    snap = tmp_path / "alarms.json"
    seen: list[tuple[str, bool]] = []
    now = iter([100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0])
    board = AlarmBoard(snap, clock=lambda: next(now))
    board.subscribe(lambda a, raised: seen.append((a.code, raised)))

    assert board.raise_("disk_full", "The data disk is full: free space.", Severity.CRITICAL)
    assert not board.raise_("disk_full", "The data disk is full: free space.", Severity.CRITICAL)
    assert board.raise_("clock", "The clock is not synchronised.")
    assert [a.code for a in board.active()] == ["disk_full", "clock"]  # critical first
    assert stat.S_IMODE(snap.stat().st_mode) == 0o600
    assert [(a.code, a.severity) for a in read_snapshot(snap)] == [
        ("disk_full", Severity.CRITICAL),
        ("clock", Severity.WARNING),
    ]

    assert board.clear("disk_full")
    assert not board.clear("disk_full")
    assert [a.code for a in read_snapshot(snap)] == ["clock"]
    assert seen == [("disk_full", True), ("clock", True), ("disk_full", False)]


def test_changed_text_keeps_first_raised_time(tmp_path: Path) -> None:
    now = iter([1.0, 2.0, 3.0, 4.0])
    board = AlarmBoard(None, clock=lambda: next(now))
    board.raise_("backlog", "Oldest pending reading is 2 hours old.")
    board.raise_("backlog", "Oldest pending reading is 3 hours old.")
    (alarm,) = board.active()
    assert alarm.since == 1.0 and "3 hours" in alarm.sentence


def test_unreadable_snapshot_reads_as_no_alarms(tmp_path: Path) -> None:
    bad = tmp_path / "alarms.json"
    bad.write_text("{not json")
    assert read_snapshot(bad) == []
    assert read_snapshot(tmp_path / "missing.json") == []
