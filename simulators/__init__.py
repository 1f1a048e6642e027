"""Device simulators for tests, demos and `vitalgate simulate`: real transports (ptys, a BLE stack),
independent encoders."""
