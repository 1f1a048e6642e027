"""No colour codes in logs that are not read at a terminal (files, pipes, journald), nor with NO_COLOR set."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
import structlog

from gateway.logging import configure_logging

ESC = "\x1b["


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def terminal() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """A real pseudo-terminal: the logger's stream is a tty, as for a person running a command by hand."""
    main, secondary = os.openpty()
    stream = open(secondary, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 - closed below
    try:
        yield stream, main
    finally:
        stream.close()
        os.close(main)


def log_once(stream: io.TextIOBase | io.TextIOWrapper) -> None:
    configure_logging("info", "console", stream)  # type: ignore[arg-type]
    structlog.get_logger().warning("forwarder_retrying", forwarder="mqtt")
    stream.flush()


def test_console_format_into_a_file_or_pipe_has_no_colour_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    log_once(out)
    assert "forwarder_retrying" in out.getvalue()
    assert ESC not in out.getvalue()


def test_colour_at_a_terminal_unless_no_color(
    terminal: tuple[io.TextIOWrapper, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, main = terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    log_once(stream)
    assert ESC in os.read(main, 65536).decode()
    monkeypatch.setenv("NO_COLOR", "1")
    log_once(stream)
    seen = os.read(main, 65536).decode()
    assert "forwarder_retrying" in seen and ESC not in seen
