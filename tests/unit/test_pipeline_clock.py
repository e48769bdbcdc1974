"""modelgate.clock: the wall clock on AWS; a source the embedded AWS installs locally."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelgate import clock


def test_the_default_is_the_wall_clock_in_utc() -> None:
    before = datetime.now(UTC)
    now = clock.now()
    assert now.tzinfo is not None and before <= now <= datetime.now(UTC)


def test_an_installed_source_is_read_until_uninstalled() -> None:
    fixed = datetime(2030, 1, 1, tzinfo=UTC)
    uninstall = clock.install(lambda: fixed)
    try:
        assert clock.now() == fixed
    finally:
        uninstall()
    assert clock.now() != fixed


def test_a_naive_source_is_refused() -> None:
    uninstall = clock.install(lambda: datetime(2030, 1, 1))
    try:
        with pytest.raises(RuntimeError, match="naive"):
            clock.now()
    finally:
        uninstall()
