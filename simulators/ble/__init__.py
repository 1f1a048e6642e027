"""Bluetooth LE peripherals on Google's Bumble stack, and a bleak backend that reaches them."""
