"""Example VitalGate driver package (see docs/writing-a-driver.md in the VitalGate repository)."""
