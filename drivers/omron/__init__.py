"""Omron blood-pressure monitors over Omron's own BLE protocol (omblepy's documented protocol)."""
