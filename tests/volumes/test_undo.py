"""The undo stack every volume, server and backup operation takes back its steps with."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from ferry.errors import InUse, StorageFull
from ferry.volumes.undo import Undo


def fail_after(undos: list[Callable[[], object]]) -> None:
    """Register ``undos`` as steps are made, then fail as a full cluster would."""
    with Undo() as undo:
        for step in undos:
            undo.add(step)
        raise StorageFull("No space left on device")


def test_a_failure_runs_the_undos_newest_first_and_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[str] = []

    def refused() -> None:
        done.append("clone snapshot")
        raise InUse("a clone hangs off it")

    with pytest.raises(StorageFull):
        fail_after([lambda: done.append("row"), refused, lambda: done.append("block image")])
    assert done == ["block image", "clone snapshot", "row"]  # one failing undo stops no other
    assert "a clone hangs off it" in caplog.text
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_an_undo_failing_with_other_than_a_ferry_error_propagates() -> None:
    with pytest.raises(ZeroDivisionError) as info:
        fail_after([lambda: 1 // 0])
    assert isinstance(info.value.__context__, StorageFull)


def test_success_drops_the_undos() -> None:
    done: list[str] = []
    with Undo() as undo:
        undo.add(done.append, "row")
    assert done == []
