"""Progress from the run's NDJSON events: a tqdm bar when tqdm is installed, or the caller's function."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Union

Event = Dict[str, Any]
ProgressArg = Union[bool, str, None, Callable[[Event], None]]


class _Bar:
    """Records done of those this run writes (a resumed run counts only what is left)."""

    def __init__(self, tqdm: Any):
        self.tqdm = tqdm
        self.bar: Any = None

    def __call__(self, e: Event) -> None:
        if e["type"] == "start":
            self.bar = self.tqdm(total=e["todo"], unit="rec", desc="embed", dynamic_ncols=True)
        elif e["type"] == "batch" and self.bar is not None:
            self.bar.update(e["records"] - self.bar.n)
        elif e["type"] == "finish" and self.bar is not None:
            self.bar.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def handler(progress: ProgressArg) -> Optional[Callable[[Event], None]]:
    """`progress`: a function (called with each event dict: start, batch, shard, worker, finish);
    True or "auto" (the default): a tqdm bar if tqdm is installed, else nothing; False or None: nothing."""
    if callable(progress):
        return progress
    if progress in (True, "auto"):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return _Bar(tqdm)
    if progress in (False, None):
        return None
    raise ValueError(f"progress={progress!r}: pass a function, True/'auto' (tqdm if installed) or False")
