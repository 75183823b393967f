"""The sweep's status on the terminal: counts per status, the rich table (live while cells run)
and the final table with the significance sentences."""

from __future__ import annotations

from pathlib import Path

from vgrout.experiments.sweep.folder import RUNNING_FILE, RUNS
from vgrout.experiments.sweep.spec import Cell

FINISHED = ("done", "resumed", "reused")


def status_counts(status: dict) -> dict:
    counts = {"cells": len(status), "finished": 0}
    for row in status.values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        counts["finished"] += row["status"] in FINISHED
    return counts


# --------------------------------------------------------------------------------- display
_STYLE = {
    "done": "green",
    "resumed": "green",
    "reused": "dim green",
    "running": "yellow",
    "failed": "bold red",
    "queued": "dim",
}


def status_table(status: dict, limit: int | None = None):
    from rich.table import Table

    counts = status_counts(status)
    title = f"sweep: {counts['finished']}/{counts['cells']} finished"
    for k in ("running", "failed", "queued"):
        if counts.get(k):
            title += f", {counts[k]} {k}"
    table = Table(title=title, title_justify="left")
    for col in ("cell", "status", "time", "note"):
        table.add_column(col)
    rows = list(status.items())
    if limit is not None and len(rows) > limit:  # show what needs attention first
        order = {"failed": 0, "running": 1, "done": 2, "resumed": 2, "queued": 3, "reused": 4}
        rows = sorted(rows, key=lambda kv: order.get(kv[1]["status"], 5))[:limit]
    for name, row in rows:
        st = row["status"]
        secs = _duration(row.get("seconds"))
        note = (row.get("error") or "")[:160]
        table.add_row(name, f"[{_STYLE.get(st, '')}]{st}[/]", secs, note)
    return table


def _duration(seconds: float | None) -> str:
    if not seconds:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{sec:02d}s"


class LiveStatus:
    """A rich live table of the cells; `running` is read from each cell's running.json marker."""

    def __init__(self, status: dict, out: Path, cells: list[Cell]):
        from rich.live import Live

        self.status, self.dirs = status, {c.name: out / RUNS / c.folder for c in cells}
        self.live = Live(status_table(status, limit=30), refresh_per_second=2, transient=True)
        self.live.start()

    def refresh(self) -> None:
        for name, row in self.status.items():
            if row["status"] == "queued" and (self.dirs[name] / RUNNING_FILE).is_file():
                row["status"] = "running"
        self.live.update(status_table(self.status, limit=30))

    def stop(self) -> None:
        self.live.stop()


def print_final_status(status: dict, counts: dict, sentences: list[str]) -> None:
    from rich.console import Console

    console = Console()
    console.print(status_table(status))
    for s in sentences:
        console.print(f"- {s}", markup=False)  # labels hold [field=value]
