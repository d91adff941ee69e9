"""When a run's side effects happen: by the clock, not by epochs (an epoch takes milliseconds on a GPU and
minutes at 224 px, so "every epoch" is either far too often or too rare)."""

from __future__ import annotations


class Interval:
    """Due once ``seconds`` have passed since it last fired; 0 = due every time it is asked."""

    def __init__(self, seconds: float, now: float):
        self.seconds, self.last = seconds, now

    def due(self, now: float) -> bool:
        return now - self.last >= self.seconds

    def fired(self, now: float) -> None:
        self.last = now


class TimeShare:
    """Keeps a task (evaluation) to at most ``share`` of the wall time: it is due when running it once more,
    for as long as it took last time, keeps its total within ``share`` of the time elapsed by then."""

    def __init__(self, share: float, spent: float = 0.0):
        self.share, self.spent, self.last = share, spent, 0.0

    def due(self, elapsed: float) -> bool:
        return self.spent + self.last <= self.share * (elapsed + self.last)

    def add(self, seconds: float, typical: float | None = None) -> None:
        """A run of the task took ``seconds``; ``typical``: what the next one will take, where this one did
        one-off work (default: as long as this one)."""
        self.spent += seconds
        self.last = seconds if typical is None else typical
