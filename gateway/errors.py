"""One base exception for the gateway; subclasses carry what an operator needs to act."""

from __future__ import annotations

__all__ = ["ConfigError", "GatewayError", "KeyFileError"]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration problem, named by file, key and what is wrong."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


class KeyFileError(GatewayError):
    """The data key is missing, malformed or too widely readable."""
