"""The gateway's health: one model in the daemon that `status`, `STATUS=`, metrics and the console read.

`HealthModel` is fed by the parts that know (drainer, device sessions, a periodic queue probe) and never
reaches into the queue on its own; `snapshot` writes it to `health.json` so `vitalgate status` in another
process shows what the daemon sees; `rules` turns it into alarms with sentences on the shared AlarmBoard.
"""

from gateway.health.model import DeviceHealth, ForwarderState, HealthModel, LatencyHistogram

__all__ = ["DeviceHealth", "ForwarderState", "HealthModel", "LatencyHistogram"]
