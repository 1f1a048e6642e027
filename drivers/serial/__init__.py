"""Serial-port device drivers: pure protocol modules plus thin sessions over `transport`."""
