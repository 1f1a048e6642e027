"""Device simulators used by tests, `vitalgate simulate` and `vitalgate demo`."""
