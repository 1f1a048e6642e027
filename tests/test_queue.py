"""The encrypted queue on a real SQLite file: durability states, dedup, group commit, no plaintext."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import ChecksumError
from gateway.crypto import KeyRing
from gateway.queue import DAY, ReadingQueue, State
from gateway.reading import Status
from tests.conftest import bp


async def test_put_is_durable_and_deduplicated(queue: ReadingQueue) -> None:
    first = await queue.put([bp(minute=1), bp(minute=2)])
    again = await queue.put([bp(minute=2), bp(minute=3)])
    assert (first.new, first.duplicates) == (2, 0)
    assert (again.new, again.duplicates) == (1, 1)
    counts = await queue.counts()
    assert counts[State.UNASSIGNED] == 3  # nothing bound yet
    assert counts[State.PENDING] == 0


async def test_pragmas_give_power_loss_durability(queue: ReadingQueue) -> None:
    async with queue._w.execute("PRAGMA journal_mode") as cur:
        assert (await cur.fetchone()) == ("wal",)
    async with queue._w.execute("PRAGMA synchronous") as cur:
        assert (await cur.fetchone()) == (2,)  # FULL
    assert queue.path.stat().st_mode & 0o777 == 0o600


async def test_unassigned_rows_flow_once_bound(queue: ReadingQueue) -> None:
    await queue.put([bp(user=1), bp(user=2, minute=5)])
    assert (await queue.lease(10))[0] == []
    await queue.bind("0123456789ABCDEF", 1, "Patient/p1")  # System ID, any case
    leased, broken = await queue.lease(10)
    assert broken == []
    assert [lease.reading for lease in leased] == [bp(user=1)]
    counts = await queue.counts()
    assert (counts[State.PENDING], counts[State.UNASSIGNED]) == (1, 1)
    await queue.bind("c0:ff:ee:00:00:01", 2, "Patient/p2")  # or the address
    assert len((await queue.lease(10))[0]) == 2
    assert await queue.unbind("c0:ff:ee:00:00:01", 2)
    assert not await queue.unbind("c0:ff:ee:00:00:01", 2)


async def test_new_readings_of_bound_slot_are_pending_at_once(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(user=1)])
    assert (await queue.counts())[State.PENDING] == 1
    assert queue.new_data.is_set()


async def test_lease_ack_release_and_backoff(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(5)])
    leased, _ = await queue.lease(3)
    ids = [lease.item_id for lease in leased]
    assert [lease.reading.device_time.minute for lease in leased] == [0, 1, 2]  # type: ignore[union-attr]
    rest, _ = await queue.lease(10, exclude=ids)
    assert [lease.item_id for lease in rest] == [ids[-1] + 1, ids[-1] + 2]
    await queue.ack(ids[:2])
    await queue.release({ids[2]: 3600.0})
    again, _ = await queue.lease(10)
    assert ids[2] not in [lease.item_id for lease in again]  # backing off
    counts = await queue.counts()
    assert (counts[State.DELIVERED], counts[State.PENDING]) == (2, 3)
    await queue.release({ids[2]: 0.0})
    leased_again = {lease.item_id: lease.attempts for lease in (await queue.lease(10))[0]}
    assert leased_again[ids[2]] == 2


async def test_delivered_rows_are_purged_after_retention(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp()])
    leased, _ = await queue.lease(1)
    await queue.ack([leased[0].item_id])
    assert await queue.purge_delivered(3600) == 0
    # done_at holds the delivery's day only (a stolen card shows no times): kept at least the retention and at
    # most a day more.
    assert await queue.purge_delivered(-DAY) == 1
    assert sum((await queue.counts()).values()) == 0


async def test_withheld_rows_are_purged_after_retention_quarantined_rows_kept(
    queue: ReadingQueue, tmp_path: Path
) -> None:
    """Withheld rows are never sent, so never acked: they go after the delivered rows' retention (read from
    `done_at`, the day they were withheld). Quarantined rows wait for an operator, however old."""
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([replace(bp(), status=frozenset({Status.CONTROL_SOLUTION})), bp(minute=5)])
    leased, _ = await queue.lease(10)
    await queue.set_state({leased[0].item_id: "HTTP 422"}, State.QUARANTINED)
    assert await queue.purge_withheld(3600) == 0  # withheld today: kept at least the retention
    with sqlite3.connect(tmp_path / "queue.db") as db:  # both were set aside long ago (no MAC covers done_at)
        db.execute("UPDATE readings SET done_at = done_at - 400 * 86400")
    db.close()
    assert await queue.purge_withheld(7 * DAY) == 1
    assert await queue.purge_delivered(7 * DAY) == 0
    counts = {s: n for s, n in (await queue.counts()).items() if n}
    assert counts == {State.QUARANTINED: 1}


async def test_withholding_a_row_later_keeps_its_day_only(queue: ReadingQueue, tmp_path: Path) -> None:
    """`set_state(..., WITHHELD)` (the queue's other way to withhold) cuts the receive time as `put` does."""
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp()])
    leased, _ = await queue.lease(1)
    await queue.release({leased[0].item_id: 30.0})
    await queue.set_state({leased[0].item_id: "sensor fault"}, State.WITHHELD)
    with sqlite3.connect(tmp_path / "queue.db") as db:
        [(state, created, done, next_at)] = db.execute("SELECT state, created_at, done_at, next_at FROM readings")
    db.close()
    assert state == State.WITHHELD and created % DAY == 0 and done % DAY == 0 and next_at == 0


async def test_clock_repair_moves_withheld_rows_by_their_sealed_receive_time(
    queue: ReadingQueue, keyring: KeyRing, tmp_path: Path
) -> None:
    """gateway.clock's repair finds rows stamped while the clock was wrong by `created_at`; a withheld row
    keeps only its day there, so it is found by the day and told apart by its sealed receive time. It is
    moved like a pending row and keeps only its (corrected) day; a row withheld that day before the wrong
    clock is left alone."""
    from datetime import UTC, datetime, timedelta

    from gateway.codec import decode_reading
    from gateway.crypto import Sealed

    await queue.bind("BP123456", 1, "Patient/p1")
    control = frozenset({Status.CONTROL_SOLUTION})
    before = datetime.now(UTC) - timedelta(seconds=5)  # withheld that day, before the clock went wrong
    await queue.put([replace(bp(minute=1), status=control, received_at=before)])
    low = datetime.now(UTC)
    await queue.put([replace(bp(minute=2), status=control, received_at=low), replace(bp(minute=3), received_at=low)])
    high = datetime.now(UTC).timestamp()
    delta = 40 * DAY + 3600.0  # the wrong clock was 40 days and an hour behind
    assert await queue.shift_times(low.timestamp(), high, delta) == 2

    def rows() -> dict[int, tuple[Any, ...]]:
        with sqlite3.connect(tmp_path / "queue.db") as db:
            got = db.execute("SELECT id, state, created_at, done_at, dedup, key_id, nonce, payload FROM readings")
            out = {}
            for i, state, created, done, dedup, key_id, nonce, payload in got:
                r = decode_reading(keyring.open(Sealed(key_id, nonce, payload), b"readings|" + dedup))
                out[i] = (state, created, done, r.received_at)
        db.close()
        return out

    (early, withheld, pending) = sorted(rows().items())
    fixed = low + timedelta(seconds=delta)
    state, created, done, received = early[1]
    assert (state, received) == (State.WITHHELD, before) and created == done and created % DAY == 0  # as it was
    day = fixed.timestamp() - fixed.timestamp() % DAY
    assert withheld[1] == (State.WITHHELD, day, day, fixed)
    assert pending[1][0] == State.PENDING and pending[1][3] == fixed
    assert low.timestamp() + delta - 5 < pending[1][1] < high + delta  # its exact (corrected) receive time


async def test_control_solution_is_withheld_not_sent(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([replace(bp(), status=frozenset({Status.CONTROL_SOLUTION}))])
    assert (await queue.counts())[State.WITHHELD] == 1
    assert (await queue.lease(10))[0] == []


async def test_device_declared_test_data_is_withheld_not_sent(queue: ReadingQueue) -> None:
    """PLX Measurement Status "data for demonstration / testing" (PLXS 1.0 §3.1.1.3) is not patient data."""
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([replace(bp(), status=frozenset({Status.TEST_DATA}))])
    assert (await queue.counts())[State.WITHHELD] == 1
    assert (await queue.lease(10))[0] == []


@pytest.mark.parametrize(
    "fault",
    [
        Status.PLX_SENSOR_DISCONNECTED,
        Status.PLX_SENSOR_MALFUNCTION,
        Status.PLX_SENSOR_DISPLACED,
        Status.PLX_SENSOR_UNSUPPORTED,
        Status.PLX_SENSOR_OFF,
        Status.PLX_EQUIPMENT_MALFUNCTION,
    ],
)
async def test_oximeter_sensor_fault_is_withheld_not_sent(queue: ReadingQueue, fault: Status) -> None:
    """A value measured through a disconnected, faulty, displaced, unknown or unworn sensor (PLX Device and
    Sensor Status bits 15, 14, 13, 12, 11 and 1) is kept for review, not sent, as the folded flag was."""
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([replace(bp(), status=frozenset({fault}))])
    assert (await queue.counts())[State.WITHHELD] == 1
    assert (await queue.lease(10))[0] == []


async def test_oximeter_signal_flags_are_sent(queue: ReadingQueue) -> None:
    """Signal-quality bits (low perfusion, poor signal ...) describe the value; it is still the patient's."""
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([replace(bp(), status=frozenset({Status.LOW_PERFUSION, Status.PLX_SIGNAL_POOR}))])
    assert len((await queue.lease(10))[0]) == 1


async def test_concurrent_puts_share_commits(queue: ReadingQueue) -> None:
    before = queue.commits
    results = await asyncio.gather(*(queue.put([bp(minute=m % 60, user=m // 60)]) for m in range(300)))
    assert sum(r.new for r in results) == 300
    assert queue.commits - before < 300  # group commit: puts waiting together share one transaction


async def test_tampered_or_moved_payload_is_quarantined_not_lost(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=1), bp(minute=2)])
    # Copy row 1's sealed payload onto row 2: AAD binds a payload to its row, so it must not open.
    with sqlite3.connect(queue.path) as db:
        db.execute(
            "UPDATE readings SET nonce = (SELECT nonce FROM readings WHERE id = 1), "
            "payload = (SELECT payload FROM readings WHERE id = 1) WHERE id = 2"
        )
    leased, broken = await queue.lease(10)
    assert [lease.item_id for lease in leased] == [1]
    assert broken == [(2, "DecryptError: authentication failed (tampered, or bound to another row)")]


async def test_no_plaintext_values_identifiers_or_patients_in_the_file(queue: ReadingQueue, tmp_path: Path) -> None:
    reading = bp(systolic=187, diastolic=113, pulse=97)
    await queue.bind("BP123456", 1, "Patient/needle-patient-77")
    await queue.put([reading])
    await queue.set_checkpoint("cuff", "last_seq", "4711")
    await queue.reject(b"RAW-FRAME-SECRET", ChecksumError(b"RAW-FRAME-SECRET", 1, 2), source="notify")
    await queue.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("queue.db*"))
    for needle in (
        b"187",
        b"needle-patient-77",
        b"BP123456",
        b"C0:FF:EE",
        b"0123456789abcdef",
        b"Acme",
        b"4711",
        b"RAW-FRAME-SECRET",
        reading.idempotency_key.encode(),
    ):
        assert needle not in data, needle
    queue._writer_task = None  # closed above; the fixture's close must not fail


async def test_checkpoints_and_rejects_round_trip(queue: ReadingQueue) -> None:
    assert await queue.checkpoint("meter", "seq") is None
    await queue.set_checkpoint("meter", "seq", "41")
    await queue.set_checkpoint("meter", "seq", "42")
    assert await queue.checkpoint("meter", "seq") == "42"
    await queue.reject(b"\x00\x01bad", ChecksumError(b"\x00\x01bad", 0x1234, 0x4321), source="dump")
    assert await queue.rejects() == [(1, "dump", "ChecksumError", b"\x00\x01bad")]


async def test_devices_lists_slots_seen(queue: ReadingQueue) -> None:
    await queue.put([bp(user=1), bp(user=1, minute=1), bp(user=2)])
    devices = await queue.devices()
    assert [(d["user"], d["readings"], d["serial_number"]) for d in devices] == [(1, 2, "BP123456"), (2, 1, "BP123456")]


async def test_rows_survive_reopen_with_rotated_key(tmp_path: Path, key_file: Path) -> None:
    from gateway.crypto import rotate_key_file

    q = await ReadingQueue.open(tmp_path / "q.db", KeyRing.load(str(key_file)))
    await q.bind("BP123456", 1, "Patient/p1")
    await q.put([bp()])
    await q.close()
    rotate_key_file(key_file)
    q = await ReadingQueue.open(tmp_path / "q.db", KeyRing.load(str(key_file)))
    try:
        leased, broken = await q.lease(10)
        assert [lease.reading for lease in leased] == [bp()] and broken == []
        assert q.binding_for(bp()) is not None
    finally:
        await q.close()


async def test_integrity_check(queue: ReadingQueue) -> None:
    await queue.put([bp()])
    assert await queue.integrity_check() == "ok"


@pytest.mark.parametrize("selector", ["eui64:0123456789abcdef", "serial:Acme:BP123456", "addr:C0:FF:EE:00:00:01"])
async def test_binding_by_device_key(queue: ReadingQueue, selector: str) -> None:
    await queue.bind(selector, 1, "Patient/p1")
    assert queue.binding_for(bp()) is not None


@pytest.mark.parametrize("selector", ["addr:c0:ff:ee:00:00:01", "eui64:0123456789ABCDEF", " C0:FF:EE:00:00:01 "])
async def test_prefixed_selectors_are_normalized_like_bare_ones(queue: ReadingQueue, selector: str) -> None:
    """`addr:` addresses compare upper-case and `eui64:` System IDs lower-case, as the bare forms do."""
    await queue.bind(selector, 1, "Patient/p1")
    assert queue.binding_for(bp()) is not None


async def test_devices_command_shows_the_binding_that_matches(tmp_path: Path, key_file: Path, capsys: Any) -> None:
    """`vitalgate devices` must say which patient a slot flows to by the same rule the drainer uses."""
    from gateway.cli import main

    cfg = tmp_path / "vg.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\nkey_file = "{key_file}"\n')
    q = await ReadingQueue.open(tmp_path / "queue.db", KeyRing.load(str(key_file)))
    try:
        await q.put([bp(user=1), bp(user=2)])
        await q.bind("addr:C0:FF:EE:00:00:01", 1, "Patient/p1")
        await q.bind("serial:Acme:BP123456", 2, "Patient/p2")
        assert q.binding_for(bp(user=1)) is not None and q.binding_for(bp(user=2)) is not None
    finally:
        await q.close()
    assert await asyncio.to_thread(main, ["devices", "--config", str(cfg)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted((row[1], row[-1]) for row in rows) == [("1", "Patient/p1"), ("2", "Patient/p2")]


async def test_unbind_removes_a_binding_stored_before_normalization(queue: ReadingQueue) -> None:
    """A binding written as typed by an older version (`addr:` lower-case) can still be removed."""
    tag = queue.keyring.tag("binding|addr:c0:ff:ee:00:00:01|1")
    sealed = queue._seal(b"bindings", tag, b'{"device": "addr:c0:ff:ee:00:00:01", "user": 1, "patient": "Patient/p"}')
    db = sqlite3.connect(queue.path)
    with db:
        db.execute(
            "INSERT INTO bindings (tag, key_id, nonce, payload) VALUES (?, ?, ?, ?)",
            (tag, sealed.key_id, sealed.nonce, sealed.ciphertext),
        )
    db.close()
    from gateway import rowguard

    # An older version's row is vouched for by the manifest the migration of its queue writes (gateway.rowguard).
    await queue.transaction(lambda db: rowguard.write_manifest(db, queue.keyring))
    assert len(await queue.reload_bindings()) == 1
    assert await queue.unbind("addr:c0:ff:ee:00:00:01", 1) is True
    assert await queue.reload_bindings() == []


async def test_put_racing_a_binding_reload_is_not_left_unassigned(tmp_path: Path, keyring: KeyRing) -> None:
    """A put that chose "unassigned" from bindings that went stale before it committed must not stay
    parked: the drainer's assign pass ran before the row existed, and nothing else would move it."""
    daemon = await ReadingQueue.open(tmp_path / "race.db", keyring)
    try:
        operator = await ReadingQueue.open(tmp_path / "race.db", keyring)  # `vitalgate bind`, another process
        await operator.bind("BP123456", 1, "Patient/p1")
        await operator.close()

        gate = asyncio.Event()

        async def busy(db: object) -> None:  # the writer is busy with earlier work when the put arrives
            await gate.wait()

        blocker = asyncio.ensure_future(daemon._write(busy))
        await asyncio.sleep(0)
        put = asyncio.ensure_future(daemon.put([bp()]))  # decides with the stale (empty) bindings
        await asyncio.sleep(0)
        assert await daemon.bindings_changed()  # what the drainer does next: reload, then assign
        await daemon.reload_bindings()
        assert await daemon.assign_unassigned() == 0  # the row is not committed yet
        gate.set()
        await blocker
        assert (await put).new == 1
        assert not await daemon.bindings_changed()  # the drainer will not look again
        counts = await daemon.counts()
        assert (counts[State.PENDING], counts[State.UNASSIGNED]) == (1, 0)
    finally:
        await daemon.close()


def test_audit_actor_without_a_passwd_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Containers often run under a uid with no passwd entry; the audit line must still be written.

    A fake: producing a uid without a passwd entry for real needs a second, unprivileged interpreter,
    which this machine's /root-installed Python does not allow."""
    import os
    import pwd

    from gateway import cli

    def missing(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", missing)
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert cli._actor() == f"? (uid {os.getuid()})"


async def test_binding_made_with_a_rotated_key_is_read_by_the_running_daemon(tmp_path: Path, key_file: Path) -> None:
    """`keys rotate` then `bind` while the daemon runs: the daemon picks up the new key, not a crash."""
    from gateway.crypto import rotate_key_file

    daemon = await ReadingQueue.open(tmp_path / "q.db", KeyRing.load(str(key_file)))
    try:
        await daemon.put([bp()])
        rotate_key_file(key_file)
        cli = await ReadingQueue.open(tmp_path / "q.db", KeyRing.load(str(key_file)))
        await cli.bind("BP123456", 1, "Patient/p1")
        await cli.close()
        assert await daemon.bindings_changed()
        bindings = await daemon.reload_bindings()
        assert [b.patient for b in bindings] == ["Patient/p1"]
        leased, broken = await daemon.lease(10)  # the bind command released the held reading
        assert broken == [] and [daemon.binding_for(x.reading) for x in leased] == bindings
    finally:
        await daemon.close()


async def test_requeue_gives_quarantined_rows_another_try(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(3)])
    leased, _ = await queue.lease(10)
    await queue.release({leased[0].item_id: 0.0})  # one earlier attempt
    await queue.set_state({x.item_id: "HTTP 422: profile" for x in leased}, State.QUARANTINED)
    assert await queue.requeue([leased[0].item_id, 999]) == 1
    assert await queue.quarantined() == [(x.item_id, "HTTP 422: profile") for x in leased[1:]]
    again, _ = await queue.lease(10)
    assert [(x.item_id, x.attempts) for x in again] == [(leased[0].item_id, 0)]
    assert await queue.requeue() == 2
    assert (await queue.counts())[State.PENDING] == 3


async def test_fault_two_processes_creating_the_queue_at_once_both_open(tmp_path: Path, keyring: KeyRing) -> None:
    """First start after install: the daemon creates the queue while `vitalgate status` (a monitoring poll)
    opens it too. Two connections, each in its own SQLite thread, race for real: the switch to WAL and the
    known-answer rows must not make either fail with "locked" or "the key does not fit" (found by review:
    about one try in four failed)."""
    for attempt in range(12):
        path = tmp_path / f"state{attempt}" / "queue.db"
        path.parent.mkdir(mode=0o700)
        opened = await asyncio.gather(*(ReadingQueue.open(path, keyring) for _ in range(2)), return_exceptions=True)
        for q in opened:
            if isinstance(q, ReadingQueue):
                await q.close()
        assert [type(q).__name__ for q in opened] == ["ReadingQueue"] * 2, [str(q) for q in opened]
        async with await ReadingQueue.open(path, keyring) as q:  # the known answer is whole: the key still fits
            assert await q.put([bp(minute=1)])
