"""Statistics over seeds: mean, std and a 95% t-interval per variant and metric, and which differences are real."""

from __future__ import annotations

import math

from scipy import stats

from medgan.metrics.catalogue import TARGETS, badness, direction


def summarise(values: list[float]) -> dict:
    """Mean, sample std and the half-width of the 95% t-interval of the mean (nan for fewer than 2 values)."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "std": math.nan, "ci95": math.nan}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"n": n, "mean": mean, "std": std, "ci95": float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)}


def aggregate(runs: list[dict]) -> dict:
    """``runs``: records with ``variant``, ``status`` and ``metrics`` (name -> value, and name_floor).

    Returns {variant: {metric: summary}} over the finished runs, plus a ``real floor`` row.
    """
    table: dict[str, dict[str, list[float]]] = {}
    floors: dict[str, list[float]] = {}
    for run in runs:
        if run["status"] != "finished":
            continue
        for name, value in run["metrics"].items():
            if name.endswith("_floor"):
                floors.setdefault(name[: -len("_floor")], []).append(value)
            else:
                table.setdefault(run["variant"], {}).setdefault(name, []).append(value)
    out = {variant: {m: summarise(v) for m, v in metrics.items()} for variant, metrics in table.items()}
    if floors:
        out["real floor"] = {m: summarise(v) for m, v in floors.items()}
    return out


def separations(summary: dict, metric: str) -> list[tuple[str, str]]:
    """Pairs (better, worse) of variants whose 95% intervals on ``metric`` do not overlap in how far they
    are from good (the catalogue's direction: lower, higher, or nearer a target such as C2ST's 0.5)."""
    rows = {v: s[metric] for v, s in summary.items() if v != "real floor" and metric in s and s[metric]["n"] >= 2}
    target = TARGETS.get(direction(metric))

    def distance(s: dict) -> tuple[float, float]:
        """(nearest, farthest) distance from good over the interval."""
        low, high = s["mean"] - s["ci95"], s["mean"] + s["ci95"]
        ends = sorted((badness(metric, low), badness(metric, high)))
        return (0.0, ends[1]) if target is not None and low <= target <= high else (ends[0], ends[1])

    spans = {v: distance(s) for v, s in rows.items()}
    return sorted((a, b) for a in rows for b in rows if spans[a][1] < spans[b][0])


def ranking(summary: dict, metrics: list[str]) -> list[dict]:
    """Variants ranked by their mean rank (1 = best) over ``metrics``, each metric scored by how far its
    mean over seeds is from good (``badness``: its value, or its distance to 1, 0.5 or the real floor)."""
    floor = summary.get("real floor", {})
    variants = [v for v in summary if v != "real floor"]
    ranks: dict[str, dict[str, int]] = {v: {} for v in variants}
    for metric in metrics:
        reference = floor.get(metric, {}).get("mean", math.nan)
        scored = [(badness(metric, summary[v][metric]["mean"], reference), v) for v in variants if metric in summary[v]]
        scored = [(b, v) for b, v in scored if not math.isnan(b)]
        for place, (_, variant) in enumerate(sorted(scored), start=1):
            ranks[variant][metric] = place
    rows = [{"variant": v, "mean_rank": sum(r.values()) / len(r), "ranks": r} for v, r in ranks.items() if r]
    return sorted(rows, key=lambda row: row["mean_rank"])
