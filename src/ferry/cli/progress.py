"""The one progress bar of ferry's commands: bytes moved, with rate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TransferSpeedColumn,
)

err = Console(stderr=True, highlight=False, markup=False)


@contextmanager
def transfer_bar(
    what: str, total: int | None, console: Console = err
) -> Iterator[Callable[[int, int | None], None]]:
    """A transfer bar, gone when done (hidden when the console is not a terminal).

    Yields ``update(bytes_done, bytes_total)``; a total of None keeps the one known so far.
    """
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with bar:
        task = bar.add_task(what, total=total)
        yield lambda done, total: bar.update(task, completed=done, total=total)
