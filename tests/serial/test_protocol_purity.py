"""The serial protocol modules are sans-I/O: importing them pulls in neither asyncio nor pyserial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROTOCOLS = [
    "drivers.serial.onetouch_ultra2",
    "drivers.serial.lifescan_binary",
    "drivers.serial.onetouch_ultraeasy",
    "drivers.serial.tanita",
]


def test_no_io_imports() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PROTOCOLS)
        + "print(sorted(n for n in ('asyncio', 'serial') if n in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
