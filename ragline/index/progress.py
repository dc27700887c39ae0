"""Progress of a long step: a bar with an ETA on a terminal, and lines for a log (Dagster's run log)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TextIO


@functools.cache
def controlling_terminal() -> TextIO | None:
    """The terminal this process was started from, or None. Dagster captures a step's stdout and
    stderr into its compute logs (they are no TTY there), but /dev/tty still reaches the user who
    ran `ragline materialize`. Opened once per process."""
    try:
        return open("/dev/tty", "w", encoding="utf-8")  # noqa: SIM115 (kept open for the process)
    except OSError:
        return None


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Counts work done out of a known total. Every update redraws a one-line bar on `terminal`
    when that is a TTY (never in a log file), and sends `log` a line with the rate and ETA."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str,
        log: Callable[[str], None],
        terminal: TextIO | None = None,
        *,
        total_work: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.label, self.total, self.unit, self.done = label, total, unit, 0
        # The ETA extrapolates work (e.g. tokens) rather than items when given: items done first
        # may be cheaper than the rest (the ledger embeds the shortest texts first).
        self.total_work, self.work_done = total_work, 0.0
        self._log, self._clock = log, clock
        self._terminal = terminal if terminal is not None and terminal.isatty() else None
        self._started = clock()

    def eta(self) -> float | None:
        elapsed = self._clock() - self._started
        if self.total_work and self.work_done:
            return (self.total_work - self.work_done) * elapsed / self.work_done
        if not self.done or not elapsed:
            return None
        return (self.total - self.done) * elapsed / self.done

    def update(self, done: int, detail: str = "", work_done: float | None = None) -> None:
        self.done = done
        if work_done is not None:
            self.work_done = work_done
        elapsed = self._clock() - self._started
        rate = done / elapsed if elapsed else 0.0
        eta = self.eta()
        left = "done" if done >= self.total else f"ETA {duration(eta)}" if eta is not None else "ETA ?"
        extra = f", {detail}" if detail else ""
        self._log(f"{self.label}: {done}/{self.total} {self.unit} ({rate:.1f}/s{extra}, {left})")
        if self._terminal is not None:
            width = 30
            filled = int(width * done / self.total) if self.total else width
            bar = "#" * filled + "-" * (width - filled)
            end = "\n" if done >= self.total else ""
            try:
                self._terminal.write(
                    f"\r{self.label} [{bar}] {done}/{self.total} {self.unit} {rate:.1f}/s "
                    f"{duration(elapsed)} elapsed, {left}   {end}"
                )
                self._terminal.flush()
            except OSError:  # the terminal went away (a hangup): the run goes on without the bar
                self._terminal = None
