"""The GATT parsers are sans-I/O: importing every one of them must not pull in asyncio, bleak or bumble."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import drivers.gatt

MODULES = sorted(
    f"drivers.gatt.{p.stem}" for p in Path(drivers.gatt.__file__).parent.glob("*.py") if p.stem != "__init__"
)


def test_no_io_imports() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "print(sorted(n for n in ('asyncio', 'bleak', 'bumble') if n in sys.modules))\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True, timeout=120
    )
    assert len(MODULES) >= 13
    assert out.stdout.strip() == "[]"
