"""Deterministic stored records for the simulated meters and scale."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["GlucoseRecord", "WeighIn", "glucose_records", "weigh_ins"]


@dataclass(frozen=True, slots=True)
class GlucoseRecord:
    time: datetime  # meter wall clock
    mg_dl: int
    control: bool = False
    meal: str = "N"
    comment: int = 0


@dataclass(frozen=True, slots=True)
class WeighIn:
    time: datetime
    weight_kg: float
    height_cm: float = 175.0
    body_fat: float = 20.0


def glucose_records(count: int, *, newest: datetime | None = None, seed: int = 1) -> list[GlucoseRecord]:
    """`count` readings, newest first, about two a day, values 60..260 mg/dL."""
    rng = random.Random(seed)
    t = (newest or datetime(2026, 11, 24, 7, 30, 0)).replace(microsecond=0)
    out = []
    for _ in range(count):
        out.append(GlucoseRecord(t, rng.randint(60, 260), meal=rng.choice("NBA"), comment=rng.randint(0, 11)))
        t -= timedelta(hours=rng.randint(5, 14), minutes=rng.randint(0, 59), seconds=rng.randint(0, 59))
    return out


def weigh_ins(count: int, *, first: datetime | None = None, seed: int = 1) -> list[WeighIn]:
    rng = random.Random(seed)
    t = (first or datetime(2026, 11, 24, 8, 0)).replace(second=0, microsecond=0)
    out = []
    for i in range(count):
        weight = round(rng.uniform(50, 120), 1)
        out.append(WeighIn(t + timedelta(minutes=i), weight, body_fat=round(rng.uniform(10, 35), 1)))
    return out
