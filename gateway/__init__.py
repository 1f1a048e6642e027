"""VitalGate: a remote-patient-monitoring gateway daemon."""

__version__ = "0.1.0"
