"""Bluetooth LE: transport interface, bleak implementation, sessions for the SIG health profiles."""
