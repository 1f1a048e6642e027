"""Device drivers: pure protocol parsers plus thin sessions that do the I/O."""
