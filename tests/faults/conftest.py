"""The fault suite reuses the BLE (Bumble link, bleak transport) and serial (pty simulators) fixtures."""

from tests.ble.conftest import ble, hub, link  # noqa: F401
from tests.serial.conftest import started  # noqa: F401
