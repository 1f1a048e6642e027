"""The start-up self check: passes on the shipped tables, fails loudly on a table edited into invalid FHIR."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from gateway.fhir import GatewayInfo, InvalidBundleError, codes, self_check
from gateway.reading import Metric, Unit


def test_self_check_covers_every_kind_and_unit() -> None:
    # blood pressure in mm[Hg] and kPa, pulse, weight in kg and lb (height m / in), glucose mg/dL and mmol/L;
    # oxygen saturation, body temperature in Cel and [degF], body composition in kg and lb; and each of the
    # 7 kinds once without any number (dataAbsentReason)
    assert self_check(GatewayInfo(id="gw-1", version="0.1.0")) == 12 + 7


@pytest.mark.parametrize(
    ("key", "change"),
    [
        ((Metric.GLUCOSE, Unit.MMOL_L), {"ucum": ""}),
        ((Metric.SYSTOLIC, Unit.KPA), {"code": {"coding": "150021"}}),
        ((Metric.BODY_HEIGHT, Unit.M), {"unit": "cm\x00"}),
    ],
)
def test_self_check_catches_a_broken_table(
    monkeypatch: pytest.MonkeyPatch, key: tuple[Metric, Unit], change: dict[str, object]
) -> None:
    broken = dict(codes.QUANTITIES)
    broken[key] = replace(broken[key], **change)  # type: ignore[arg-type]
    monkeypatch.setattr(codes, "QUANTITIES", MappingProxyType(broken))
    with pytest.raises(InvalidBundleError):
        self_check(GatewayInfo(id="gw-1", version="0.1.0"))
