"""Forwarders send mapped readings to a backend; the core owns buffering and retry."""
