"""What a batch of executing notebooks is doing, for run_notebooks (make figures): every minute
one line per running notebook, read from the output notebook papermill saves after each cell."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path


def cell_progress(path: Path) -> tuple[int, int] | None:
    """(cells completed, code cells) of a papermill output notebook; None before it starts."""
    try:
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    except (OSError, ValueError, KeyError):
        return None  # not written yet, or caught mid-write
    status = [c.get("metadata", {}).get("papermill", {}).get("status") for c in cells]
    if "running" not in status and "completed" not in status:
        return None
    return status.count("completed"), len(cells)


class Monitor(threading.Thread):
    """Prints the progress of `outputs` (name -> output notebook) every `every` seconds, with
    last time's runtime (`last`, seconds) to compare against, until stop()."""

    def __init__(self, outputs: dict[str, Path], last: dict[str, float], every: float = 60):
        super().__init__(daemon=True)
        self.outputs, self.last, self.every = outputs, last, every
        self.started = {name: None for name in outputs}
        self._done = threading.Event()

    def run(self) -> None:
        begin = time.time()
        while not self._done.wait(self.every):
            for name, path in self.outputs.items():
                if not path.exists() or path.stat().st_mtime < begin:
                    continue
                progress = cell_progress(path)
                if progress is None or progress[0] == progress[1]:
                    continue
                self.started[name] = self.started[name] or time.time()
                minutes = (time.time() - self.started[name]) / 60
                last = f" ({self.last[name] / 60:.0f} min last time)" if name in self.last else ""
                print(
                    f"[{time.strftime('%H:%M')}] {name}: {progress[0]} of {progress[1]} cells "
                    f"done, {minutes:.0f} min in{last}",
                    flush=True,
                )

    def stop(self) -> None:
        self._done.set()
