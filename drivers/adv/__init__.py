"""Devices that only advertise: readings decoded from BLE advertisement data (no connection)."""
