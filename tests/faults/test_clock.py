"""Time you can trust (issue 10, must-have 2): the real daemon in a child process under libfaketime.

The wall clock is moved by rewriting libfaketime's timestamp file while the daemon runs (as NTP would
step it); the monotonic clock is left alone (FAKETIME_DONT_FAKE_MONOTONIC), as on a real machine."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.faults.common import ROOT, Lines, child_env, outbox, simulated, vitalgate, wait_for, write_config

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
pytestmark = pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime (Debian package faketime) missing")


def faked(folder: Path, offset: str) -> dict[str, str]:
    (folder / "faketime").write_text(offset + "\n")
    return child_env(
        LD_PRELOAD=str(LIBFAKETIME),
        FAKETIME_TIMESTAMP_FILE=str(folder / "faketime"),
        FAKETIME_NO_CACHE="1",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
    )


def set_clock(folder: Path, offset: str) -> None:
    tmp = folder / "faketime.tmp"
    tmp.write_text(offset + "\n")
    tmp.replace(folder / "faketime")


def run(cfg: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Lines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    return proc, Lines(proc.stdout)


def finish(proc: subprocess.Popen[bytes], out: Lines) -> bytes:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    out.join()
    text = out.text()
    assert proc.returncode == 0 and b"Traceback" not in text, text[-3000:]
    return text


def issued(folder: Path) -> list[datetime]:
    return [
        datetime.fromisoformat(e["resource"]["issued"])
        for b in outbox(folder)
        for e in b["entry"]  # type: ignore[attr-defined]
        if e["resource"]["resourceType"] == "Observation" and "issued" in e["resource"]
    ]


def test_clock_in_2001_holds_sending_then_corrects_receive_times(tmp_path: Path) -> None:
    """A Pi without RTC before NTP: readings are committed, nothing goes out stamped 2001; when the clock
    steps to the real time the receive times are moved by the step and everything is delivered once."""
    cfg = write_config(tmp_path, devices=simulated("cuff", "S-CLOCK", 6, interval=0.05))
    assert vitalgate("bind", "S-CLOCK", "p1", "--config", str(cfg)).returncode == 0
    before = datetime.now(UTC)
    proc, out = run(cfg, faked(tmp_path, "-9100d"))  # about 2001-12
    try:
        # The counts come from the queue, the alarm from the daemon's snapshot, written a moment later.
        # 9,100 days back is December 2001 or January 2002, depending on today's date.
        wanted = (r"pending      6", r"\[critical\] the system clock says 200[12]-", r"\(clock_implausible\)")

        def shown() -> bool:
            out_ = vitalgate("status", "--config", str(cfg)).stdout
            return all(re.search(w, out_) for w in wanted)

        wait_for(shown, 30, "6 committed and the clock alarm shown")
        assert outbox(tmp_path) == []
        set_clock(tmp_path, "+0")  # NTP answered
        wait_for(lambda: len(outbox(tmp_path)) >= 6, 30, "all 6 delivered once the clock is right")
    finally:
        text = finish(proc, out)
    after = datetime.now(UTC)
    stamps = issued(tmp_path)
    assert len(outbox(tmp_path)) == 6 and stamps and all(before <= t <= after for t in stamps), stamps
    assert b'"receive_times_corrected"' in text and b'"clock_trusted"' in text


def test_retries_scheduled_under_a_future_clock_are_clamped_when_it_steps_back(tmp_path: Path) -> None:
    """Rows retried while the clock said 2035 kept next_at = 2035 after it was corrected: now clamped."""
    cfg = write_config(tmp_path, devices=simulated("cuff", "S-FUTURE", 5, interval=0.05))
    assert vitalgate("bind", "S-FUTURE", "p1", "--config", str(cfg)).returncode == 0
    # Under the 2035 clock the file output writes bundles-2035MMDD.ndjson: a folder of that name makes every
    # send fail with EISDIR (retried; a symlink there would be refused as an attack, not retried); today's
    # file name, once the clock is right, is free.
    future = datetime.now(UTC) + timedelta(days=3200)
    (tmp_path / "state/outbox").mkdir(parents=True, mode=0o700)  # private, or the file output refuses it
    for day in (-1, 0, 1):
        (tmp_path / "state/outbox" / f"bundles-{future + timedelta(days=day):%Y%m%d}.ndjson").mkdir(mode=0o700)
    (tmp_path / "state/outbox/bundles-99991231.ndjson").touch(mode=0o600)  # the newest file, read at start
    db = tmp_path / "state" / "queue.db"
    proc, out = run(cfg, faked(tmp_path, "+3200d"))  # about 2035: plausible, but wrong
    try:

        def retried_in_the_future() -> bool:
            with sqlite3.connect(db) as con:
                rows = con.execute("SELECT count(*) FROM readings WHERE attempts > 0 AND next_at > ?", (2e9,))
                return bool(rows.fetchone()[0] >= 5)

        wait_for(retried_in_the_future, 30, "rows retried with next_at in 2035")
        set_clock(tmp_path, "+0")
        wait_for(lambda: len(outbox(tmp_path)) >= 5, 30, "delivered now, not in 2035")
    finally:
        text = finish(proc, out)
    assert len(outbox(tmp_path)) == 5
    assert b'"clock_jumped"' in text and b'"clock_stamps_repaired"' in text


def _delivered_rows(tmp_path: Path, cfg: Path, n: int) -> Path:
    assert vitalgate("bind", "S-PURGE", "p1", "--config", str(cfg)).returncode == 0
    proc, out = run(cfg, child_env())
    try:
        wait_for(lambda: len(outbox(tmp_path)) >= n, 30, "rows delivered")
        wait_for(lambda: f"delivered    {n}" in vitalgate("status", "--config", str(cfg)).stdout, 30, "acked")
    finally:
        finish(proc, out)
    return tmp_path / "state" / "queue.db"


def test_no_purge_on_an_implausible_clock(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "", devices=simulated("cuff", "S-PURGE", 4, interval=0.02))
    cfg.write_text(cfg.read_text().replace("[queue]\n", "[queue]\nretention_days = 1\n"))
    _delivered_rows(tmp_path, cfg, 4)
    proc, out = run(cfg, faked(tmp_path, "+5000d"))  # about 2040: every delivered row looks 14 years old
    try:
        wait_for(lambda: out.has(b'"forwarder_connected"'), 30, "the drainer at its purge point")
        wait_for(lambda: out.has(b'"clock_implausible"'), 30, "the clock judged")
        time.sleep(1.5)  # one more drainer loop: it must still not purge
        assert "delivered    4" in vitalgate("status", "--config", str(cfg)).stdout
    finally:
        text = finish(proc, out)
    assert b'"delivered_purged"' not in text


def test_stamps_left_by_a_wrong_clock_are_repaired_at_start(tmp_path: Path) -> None:
    """The campaign's purge: rows delivered under a 2001 clock were all purged at the next start on the
    real clock; and rows retried under 2040 waited for 2040. Both are repaired before the drainer runs."""
    cfg = write_config(tmp_path, "", devices=simulated("cuff", "S-PURGE", 2, interval=0.02))
    db = _delivered_rows(tmp_path, cfg, 2)
    # Two more readings that cannot be delivered yet: today's day file name is taken by a folder (EISDIR,
    # retried), so they stay pending with their state MACs intact. Flipping delivered rows back to pending
    # with plain SQL is tampering since gateway/rowguard.py: such rows are never sent, rightly.
    for f in (tmp_path / "state" / "outbox").glob("*"):
        f.unlink()
    (tmp_path / "state/outbox" / f"bundles-{datetime.now(UTC):%Y%m%d}.ndjson").mkdir(mode=0o700)
    cfg.write_text(cfg.read_text().replace("count = 2", "count = 4"))  # the cuff goes on from its checkpoint
    proc, out = run(cfg, child_env())
    try:

        def retried() -> bool:
            with sqlite3.connect(db) as con:
                return bool(
                    con.execute("SELECT count(*) FROM readings WHERE state = 0 AND attempts > 0").fetchone()[0] == 2
                )

        wait_for(retried, 30, "the 2 later rows retried")
    finally:
        finish(proc, out)
    # What the wrong clocks left (neither column is under the state MAC): delivered rows stamped 2001, and
    # the pending ones scheduled for 2040 as a 2040 clock would have left them.
    with sqlite3.connect(db) as con:
        con.execute(
            "UPDATE readings SET done_at = ? WHERE done_at IS NOT NULL", (datetime(2001, 1, 1, tzinfo=UTC).timestamp(),)
        )
        con.execute("UPDATE readings SET next_at = ? WHERE state = 0", (2.2e9,))
    con.close()
    (tmp_path / "state/outbox" / f"bundles-{datetime.now(UTC):%Y%m%d}.ndjson").rmdir()
    proc, out = run(cfg, child_env())
    try:
        wait_for(lambda: len(outbox(tmp_path)) >= 2, 30, "the 2 rows scheduled for 2040 sent now")
        wait_for(lambda: "delivered    4" in vitalgate("status", "--config", str(cfg)).stdout, 30, "4 kept")
    finally:
        text = finish(proc, out)
    assert b'"delivered_purged"' not in text and b'"clock_stamps_repaired"' in text
    events = [orjson.loads(line) for line in text.splitlines() if line.startswith(b"{")]
    assert next(e for e in events if e["event"] == "clock_stamps_repaired")["rows"] == 4


def test_a_meter_clock_is_never_set_from_an_implausible_gateway_clock(tmp_path: Path) -> None:
    """Under a 2001 clock the gateway would have set a correct meter to 2001 (and every later reading with it)."""
    from simulators.serial.ultra2 import Ultra2Simulator
    from tests.serial.conftest import RECORDS

    link = tmp_path / "ttyMeter"
    sim = Ultra2Simulator(RECORDS, link=link).start()  # the meter's clock is right (the test's real clock)
    try:
        cfg = write_config(tmp_path)
        cfg.write_text(
            cfg.read_text()
            + f'[[devices]]\ndriver = "onetouch-ultra2"\nname = "meter"\nport = "{link}"\npoll_seconds = 0.2\n'
        )
        assert vitalgate("bind", "AB123456Y", "p1", "--config", str(cfg)).returncode == 0
        before = datetime.now(UTC)
        proc, out = run(cfg, faked(tmp_path, "-9100d"))
        try:
            n = len(RECORDS)
            wait_for(lambda: f"pending      {n}" in vitalgate("status", "--config", str(cfg)).stdout, 30, "committed")
            wait_for(lambda: out.count(b'"meter_identified"') >= 2, 30, "a second download under the wrong clock")
            assert sim.clock_sets == 0 and outbox(tmp_path) == []
            set_clock(tmp_path, "+0")
            wait_for(lambda: len(outbox(tmp_path)) >= n, 30, "all delivered once the clock is right")
        finally:
            text = finish(proc, out)
    finally:
        sim.stop()
    assert sim.clock_sets == 0 and b'"meter_clock_set"' not in text
    stamps = issued(tmp_path)
    assert len(outbox(tmp_path)) == len(RECORDS) and stamps and all(before <= t <= datetime.now(UTC) for t in stamps)


def test_receive_times_are_corrected_after_a_restart_before_the_clock_was_right(tmp_path: Path) -> None:
    """Stopped under the 2001 clock, started again once NTP answered (same boot): the wrong stamps are
    still moved, through the boot-time clock the two runs share."""
    cfg = write_config(tmp_path, devices=simulated("cuff", "S-RESTART", 5, interval=0.05))
    assert vitalgate("bind", "S-RESTART", "p1", "--config", str(cfg)).returncode == 0
    before = datetime.now(UTC)
    proc, out = run(cfg, faked(tmp_path, "-9100d"))
    try:
        wait_for(lambda: "pending      5" in vitalgate("status", "--config", str(cfg)).stdout, 30, "5 committed")
        wait_for((tmp_path / "state/clock.json").exists, 30, "the wrong-clock segment saved")
    finally:
        finish(proc, out)
    assert outbox(tmp_path) == []
    proc, out = run(cfg, child_env())  # the real clock now
    try:
        wait_for(lambda: len(outbox(tmp_path)) >= 5, 30, "all 5 delivered")
    finally:
        text = finish(proc, out)
    stamps = issued(tmp_path)
    assert len(outbox(tmp_path)) == 5 and stamps and all(before <= t <= datetime.now(UTC) for t in stamps), stamps
    assert b'"clock_segments_restored"' in text and b'"receive_times_corrected"' in text
    assert not (tmp_path / "state/clock.json").exists()
