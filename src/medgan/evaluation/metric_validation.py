"""``medgan validate-metrics``: does each metric notice when real images get worse, on this dataset?

The protocol of the FID paper (Heusel et al. 2017, disturbance experiments), on real images only:

1. A random split of the real test split into two disjoint halves of ``n`` images: A plays the
   generator, B the real reference set (``evaluate``'s ``Scorer``, so the very same metric code).
2. Spread: every metric for undisturbed A against B, over ``seeds`` random splits; its sample std is
   the metric's seed-to-seed spread (the spread of a two-sample statistic over random half-splits of
   one pool approximates its sampling spread: the permutation argument).
3. Disturbances (``disturb.py``): on split 0, every metric for A disturbed at levels 1..4 against B.
4. Judgement per metric and disturbance (``judge``), on the deviation d_k = badness(level k) -
   badness(level 0), ``badness`` being the metric's distance from good in its "worse" direction:
   - **monotone**: d never decreases from one level to the next by more than the spread (the metric's
     own noise, e.g. a C2ST accuracy saturated near 1) and d_4 > ``MULTIPLE`` x the spread (and > 0);
   - **sensitive**: monotone and d_1 > ``MULTIPLE`` (2) x the spread: even the mildest level stands out
     of the metric's own noise.
   A metric **passes** on the dataset when it is sensitive to every disturbance.

Writes validation.json, validation.md (the table) and validation.png (one panel per disturbance).
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import torch

from medgan import files
from medgan.data import ImageSet
from medgan.evaluation.disturb import LEVELS, STRENGTHS, disturbances, other_source
from medgan.evaluation.evaluate import Scorer, build_extractors
from medgan.metrics.catalogue import NOT_VALIDATED, badness, direction

MULTIPLE = 2.0  # sensitive: the smallest level's deviation exceeds MULTIPLE x the seed-to-seed spread
RULE = (
    f"monotone: the deviation from level 0 in the metric's worse direction never decreases from one level to "
    f"the next by more than the spread and is > {MULTIPLE:g} x the spread (and > 0) at level {LEVELS}; "
    f"sensitive: monotone and the level-1 deviation > {MULTIPLE:g} x the "
    f"metric's seed-to-seed spread (std over random half-splits of the real test split); "
    f"passed: sensitive to every disturbance"
)


def judge(metric: str, values: list[float], spread: float) -> dict:
    """Monotone? Sensitive? for one metric's values at levels 0..K and its spread (see the module docstring)."""
    deviation = [badness(metric, v, values[0]) - badness(metric, values[0], values[0]) for v in values]
    monotone = all(b >= a - spread for a, b in zip(deviation, deviation[1:])) and deviation[-1] > max(
        0.0, MULTIPLE * spread
    )
    ratio = deviation[1] / spread if spread > 0 else (math.inf if deviation[1] > 0 else 0.0)
    return {
        "values": values,
        "deviation": deviation,
        "monotone": monotone,
        "level1_over_spread": ratio,
        "sensitive": bool(monotone and ratio > MULTIPLE),
    }


def _split(pool: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))
    return order[:n], order[n : 2 * n]


def validate_metrics(
    train: ImageSet,
    test: ImageSet,
    extractors=("domain",),
    samples: int = 1000,
    seeds: int = 5,
    device="cpu",
    inception_weights=None,
    domain_steps: int | None = None,
    log=print,
) -> dict:
    """Run the protocol; returns the result that ``write_validation`` writes."""
    start = time.time()
    n = min(samples, len(test) // 2)
    if n < 20 or seeds < 2:
        raise ValueError(f"need >= 40 test images and >= 2 seeds, got {len(test)} images and {seeds} seeds")
    built, infos = build_extractors(extractors, train, test, device, inception_weights, domain_steps)
    pool = test.uint8()
    with torch.random.fork_rng(devices=[]):
        undisturbed, scorers = [], {}
        for seed in range(seeds):
            a, b = _split(len(pool), n, seed)
            scorers[seed] = scorer = Scorer(built, pool[b], train, seed, device)
            undisturbed.append(scorer.values(pool[a]))
            log(f"split {seed}: undisturbed ({time.time() - start:.0f} s)")
        metrics = [m for m in undisturbed[0] if m not in NOT_VALIDATED]
        spread = {m: statistics.stdev(r[m] for r in undisturbed) for m in metrics}
        source, other = other_source(train.name, train.size, train.channels)
        images = pool[_split(len(pool), n, 0)[0]]
        levels: dict[str, list[dict]] = {}
        for name, disturb in disturbances(other).items():
            levels[name] = [undisturbed[0]] + [
                scorers[0].values(disturb(images, level, seed=0)) for level in range(1, LEVELS + 1)
            ]
            log(f"{name}: levels 1-{LEVELS} ({time.time() - start:.0f} s)")
    table = {}
    for m in metrics:
        judged = {name: judge(m, [v[m] for v in values], spread[m]) for name, values in levels.items()}
        table[m] = {
            "direction": direction(m),
            "spread": spread[m],
            "disturbances": judged,
            "sensitive_to": sum(j["sensitive"] for j in judged.values()),
            "passed": all(j["sensitive"] for j in judged.values()),
        }
    return {
        "dataset": train.name,
        "size": train.size,
        "channels": train.channels,
        "n_disturbed": n,
        "n_reference": n,
        "test_images": len(test),
        "seeds": seeds,
        "strengths": STRENGTHS,
        "mixed_in_source": source,
        "rule": RULE,
        "not_validated": NOT_VALIDATED,
        "extractors": infos,
        "metrics": table,
        "undisturbed": undisturbed,
        "seconds": time.time() - start,
    }


def to_markdown(result: dict) -> str:
    """validation.md: per metric and disturbance the level-1 deviation in spreads, and the verdict."""
    names = list(result["strengths"])
    lines = [
        f"# Metric validation: {result['dataset']} ({result['size']} px, {result['channels']} ch)",
        "",
        f"Real test split ({result['test_images']} images) split into {result['n_disturbed']} disturbed vs "
        f"{result['n_reference']} reference images; spread over {result['seeds']} random splits; "
        f"mixed-in source: {result['mixed_in_source']}; {result['seconds']:.0f} s.",
        "",
        f"Rule: {result['rule']}.",
        "",
        "Cells: level-1 deviation / spread; `✓` sensitive, `~` monotone but level 1 within noise, `✗` not monotone.",
        "",
        "| metric | better | spread | " + " | ".join(names) + " | verdict |",
        "|---" * (len(names) + 4) + "|",
    ]
    for metric, row in result["metrics"].items():
        cells = []
        for name in names:
            j = row["disturbances"][name]
            mark = "✓" if j["sensitive"] else "~" if j["monotone"] else "✗"
            cells.append(f"{mark} {j['level1_over_spread']:.3g}")
        verdict = "passed" if row["passed"] else f"not sensitive ({row['sensitive_to']}/{len(names)})"
        lines.append(
            f"| {metric} | {row['direction']} | {row['spread']:.3g} | " + " | ".join(cells) + f" | {verdict} |"
        )
    lines += [
        "",
        "Strengths of levels 1-4: " + "; ".join(f"{k} {list(v)}" for k, v in result["strengths"].items()) + ".",
    ]
    lines += [f"Not validated: {k} ({why})." for k, why in result["not_validated"].items()]
    for name, info in result["extractors"].items():
        if not info.get("available"):
            lines.append(f"{name} extractor unavailable: {info['reason']}")
        elif "test_auc" in info:
            lines.append(
                f"{name} extractor ({info['task']}): test AUC {info['test_auc']:.3f} / ACC {info['test_acc']:.3f}."
            )
    return "\n".join(lines) + "\n"


def plot(result: dict, path) -> None:
    """validation.png: per disturbance, every metric's deviation (divided by its largest) against the level;
    solid lines: sensitive, dashed: not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["strengths"])
    fig, axes = plt.subplots(2, math.ceil(len(names) / 2), figsize=(15, 8), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for metric, row in result["metrics"].items():
            j = row["disturbances"][name]
            scale = max(abs(d) for d in j["deviation"]) or 1.0
            ax.plot(
                range(LEVELS + 1),
                [d / scale for d in j["deviation"]],
                marker="o",
                ms=3,
                linestyle="-" if j["sensitive"] else "--",
                label=metric,
            )
        ax.set_title(name)
        ax.set_xlabel("level")
        ax.set_xticks(range(LEVELS + 1))
        ax.set_ylabel("deviation (worse = up) / its max")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{result['dataset']}: metrics under disturbances of real images (solid: sensitive)")
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_validation(result: dict, out) -> None:
    out = Path(out)
    files.write_json(out / "validation.json", result)
    files.write_text(out / "validation.md", to_markdown(result))
    plot(result, out / "validation.png")
