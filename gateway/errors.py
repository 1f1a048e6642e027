"""One base exception for the gateway; subclasses carry what an operator needs to act."""

from __future__ import annotations

__all__ = ["ConfigError", "ConfigErrors", "GatewayError", "KeyFileError"]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration problem, named by file, key and what is wrong."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


class ConfigErrors(ConfigError):
    """Several problems in one file, all reported at once (fix them in one pass, not one per run).

    Keeps the first problem's file/key/problem, so code that handles one ConfigError still works.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.file, first.key, first.problem)
        self.errors = errors
        lines = "\n".join(f"  {e.key}: {e.problem}" for e in errors)
        self.args = (f"{first.file}: {len(errors)} problems:\n{lines}",)


class KeyFileError(GatewayError):
    """The data key is missing, malformed or too widely readable."""
