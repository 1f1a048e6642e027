"""Body composition scales through bleak + our Bumble backend + a Bumble scale with both services, real queue."""

from __future__ import annotations

from datetime import datetime

from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.scale import ScaleDriver
from gateway.queue import ReadingQueue
from gateway.reading import Kind, Measurement, Metric, Unit
from simulators.ble.body_scale import BodyCompositionScale, BodyRecord
from tests.ble.conftest import Recorded, make_ctx

T1 = datetime(2026, 11, 30, 6, 45, 0)
ANNA = BodyRecord(68.4, 27.5, time=T1, user=1, muscle_percent=35.2, water_kg=33.1, impedance_ohm=512.3, bmr_kj=5980)
BEN = BodyRecord(91.2, 21.0, user=2)


async def _session(link: LocalLink, ble: BleakTransport, queue: ReadingQueue, scale: BodyCompositionScale) -> Recorded:
    await scale.start(link)
    rec = make_ctx(queue, ScaleDriver.name, "scale", address=scale.address, idle_timeout=1.5)
    try:
        await ScaleDriver(ble).run(rec.ctx)
    finally:
        await scale.stop()
    return rec


def _by_kind(rec: Recorded) -> dict[Kind, list[tuple[int | None, tuple[Measurement, ...]]]]:
    out: dict[Kind, list[tuple[int | None, tuple[Measurement, ...]]]] = {}
    for r in rec.readings:
        out.setdefault(r.kind, []).append((r.user_slot, r.measurements))
    return out


ANNA_BODY = (
    Measurement(Metric.BODY_FAT, 27.5, Unit.PERCENT),
    Measurement(Metric.MUSCLE_PERCENT, 35.2, Unit.PERCENT),
    Measurement(Metric.BODY_WATER_MASS, 33.1, Unit.KG),
    Measurement(Metric.IMPEDANCE, 512.3, Unit.OHM),
    Measurement(Metric.BASAL_METABOLISM, 5980.0, Unit.KJ),
)


async def test_both_services_one_weight_per_weigh_in(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> None:
    rec = await _session(link, ble, queue, BodyCompositionScale([ANNA, BEN]))
    got = _by_kind(rec)
    assert got[Kind.BODY_WEIGHT] == [
        (1, (Measurement(Metric.BODY_WEIGHT, 68.4, Unit.KG),)),
        (2, (Measurement(Metric.BODY_WEIGHT, 91.2, Unit.KG),)),
    ]
    assert got[Kind.BODY_COMPOSITION] == [
        (1, ANNA_BODY),
        (2, (Measurement(Metric.BODY_FAT, 21.0, Unit.PERCENT),)),
    ]
    assert set(got) == {Kind.BODY_WEIGHT, Kind.BODY_COMPOSITION}


async def test_split_packets_on_a_composition_only_scale(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    scale = BodyCompositionScale([ANNA, BEN], split=True, with_weight_service=False)
    rec = await _session(link, ble, queue, scale)
    got = _by_kind(rec)
    assert got[Kind.BODY_COMPOSITION] == [(1, ANNA_BODY), (2, (Measurement(Metric.BODY_FAT, 21.0, Unit.PERCENT),))]
    # No Weight Scale service: the weight comes from the body composition measurement, once.
    assert got[Kind.BODY_WEIGHT] == [
        (1, (Measurement(Metric.BODY_WEIGHT, 68.4, Unit.KG),)),
        (2, (Measurement(Metric.BODY_WEIGHT, 91.2, Unit.KG),)),
    ]
    composition = next(r for r in rec.readings if r.kind is Kind.BODY_COMPOSITION)
    assert composition.device_time == T1
    assert len(composition.raw) > 20  # both packets kept


async def test_broken_pair_kept_and_the_next_weigh_in_still_read(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    half = bytes.fromhex("0010EA00")  # first packet of a pair (bit 12), its second never sent
    scale = BodyCompositionScale([half, BEN], with_weight_service=False)
    rec = await _session(link, ble, queue, scale)
    assert [(r.kind, r.user_slot) for r in rec.readings] == [(Kind.BODY_COMPOSITION, 2), (Kind.BODY_WEIGHT, 2)]
    rejects = await queue.rejects()
    assert [(source, raw) for _id, source, _error, raw in rejects] == [("scale:ble-weight-scale/2a9c", half)]
