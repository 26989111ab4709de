"""What a folder run did: its work items, each item's result, and the report the run writes.

Plain data, shared by `batch` (which fills it) and `gallery` (which draws it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class WorkItem:
    source: Path
    output: Path
    style_image: Path


@dataclass
class ItemResult:
    item: WorkItem
    status: str  # "done", "skipped" or "failed"
    reason: str = ""
    seconds: float = 0.0
    # failed in an earlier run, and the file has not changed since: not retried
    before: bool = False


@dataclass
class BatchReport:
    input: Path
    output: Path
    results: list[ItemResult] = field(default_factory=list)

    def of(self, status: str) -> list[ItemResult]:
        return [r for r in self.results if r.status == status]

    @property
    def new_failures(self) -> list[ItemResult]:
        return [r for r in self.of("failed") if not r.before]

    @property
    def old_failures(self) -> list[ItemResult]:
        """Failed in an earlier run on the same file: reported again, not retried."""
        return [r for r in self.of("failed") if r.before]

    def to_json(self) -> dict:
        return {
            "input": str(self.input),
            "output": str(self.output),
            "counts": {
                **{s: len(self.of(s)) for s in ("done", "skipped", "failed")},
                "failed_before": len(self.old_failures),
            },
            "items": [
                {
                    "source": str(r.item.source),
                    "output": str(r.item.output),
                    "style": str(r.item.style_image),
                    "status": r.status,
                    "reason": r.reason,
                    "seconds": round(r.seconds, 2),
                    "failed_before": r.before,
                    "fingerprint": fingerprint(r.item.source) if r.status == "failed" else None,
                }
                for r in self.results
            ],
        }


ItemCallback = Callable[
    [int, int, WorkItem, ItemResult | None], None
]  # (index, total, item, result or None when starting)


def fingerprint(path: Path) -> str | None:
    """Size and modification time: a failed photo is retried only once it changes."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def format_duration(seconds: float) -> str:
    """A time span as a person reads it in a progress line or an estimate: 45 s, 3 min 05 s, 2 h
    10 min."""
    hours, rest = divmod(round(seconds), 3600)
    if hours:
        return f"{hours} h {rest // 60:02d} min"
    return f"{rest // 60} min {rest % 60:02d} s" if rest >= 60 else f"{rest} s"
