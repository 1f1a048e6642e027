"""Device simulators for tests and demos: real transports (ptys, a BLE stack), independent encoders."""
