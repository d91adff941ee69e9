"""A study's reports: ``results.csv``, ``report.md`` and ``report.html`` (one self-contained page, images
embedded, plotted with matplotlib). All study rendering lives here."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from medgan import files
from medgan.metrics.catalogue import direction, separable, study_columns
from medgan.rundir import RunDir
from medgan.study.aggregate import ranking

CURVES = ("d_loss", "g_loss")
BETTER = {"lower": "lower", "higher": "higher", "-> 0.5": "→ 0.5", "~1": "→ 1", "~floor": "→ floor"}


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _file_img(path: Path, alt: str) -> str:
    return (
        _img(base64.b64encode(path.read_bytes()).decode(), alt)
        if path.exists()
        else f"<em>{html.escape(alt)}: missing</em>"
    )


def _records(run: dict, kind: str) -> list[dict]:
    return RunDir(run["dir"]).read_records(kind)


def _curve_figure(runs: list[dict], kind: str, keys: tuple[str, ...], title: str) -> str | None:
    """Per variant: mean over seeds of each key against epoch, with a min-max band; None when no variant has
    two or more epochs to draw."""
    curves: dict[tuple[str, str], dict[int, list[float]]] = {}
    for run in runs:
        for rec in _records(run, kind):
            for key in keys:
                if key in rec:
                    curves.setdefault((run["variant"], key), {}).setdefault(rec["epoch"], []).append(rec[key])
    if not any(len(by_epoch) >= 2 for by_epoch in curves.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for variant in sorted({r["variant"] for r in runs}):
            by_epoch = curves.get((variant, key))
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            values = [np.array(by_epoch[e]) for e in epochs]
            line = ax.plot(epochs, [v.mean() for v in values], marker="o", ms=3, label=variant)[0]
            ax.fill_between(
                epochs, [v.min() for v in values], [v.max() for v in values], alpha=0.2, color=line.get_color()
            )
        ax.set_title(key)
        ax.set_xlabel("epoch")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    return _png(fig)


def write_reports(results: dict, out: Path) -> None:
    """results.csv, report.md and report.html of a study in ``out``."""
    files.write_text(out / "results.csv", to_csv(results["summary"]))
    files.write_text(out / "report.md", to_markdown(results))
    write_report(results, out / "report.html")


def _metric_name(metric: str, validation: dict | None) -> str:
    if validation and validation["passed"].get(metric) is False:
        return f"{metric} (not sensitive on this dataset)"
    return metric


def to_csv(summary: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["variant", "metric", "n", "mean", "std", "ci95"])
    for variant, metrics in summary.items():
        for metric, s in sorted(metrics.items()):
            writer.writerow([variant, metric, s["n"], s["mean"], s["std"], s["ci95"]])
    return buffer.getvalue()


def significant(x: float | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures, with no exponent from 1 up (676.9 -> 677, 12345 -> 12300)."""
    if x is None or not math.isfinite(x):
        return "n/a"
    text = f"{x:.{digits}g}"
    return f"{float(text):.0f}" if "e+" in text else text


def cell(s: dict | None, interval: bool = True) -> str:
    """Mean to 3 significant figures, ± the 95% half-width only where the interval has spread at that precision
    (so no "± 3.7e-17" for seeds that agree, and no interval for a single seed)."""
    if not s:
        return ""
    mean, half = s["mean"], s["ci95"]
    if interval and math.isfinite(half) and significant(mean - half) != significant(mean + half):
        return f"{significant(mean)} ± {significant(half, 2)}"
    return significant(mean)


def to_markdown(results: dict) -> str:
    """report.md: the report's text sections, then its image grids as links into the run directories."""
    return "\n".join(_text_sections(results) + [""] + _markdown_images(results)) + "\n"


def _text_sections(results: dict) -> list[str]:
    """Findings, the results table (mean ± 95% CI over seeds, which way is better), separations, metric
    validation and the runs with their steps and times."""
    summary, runs = results["summary"], results["runs"]
    metrics = study_columns(m for s in summary.values() for m in s)
    study = results["study"]
    lines = [
        f"# Study: {study['dataset']}",
        "",
        f"Models {', '.join(study['models'])}; losses {', '.join(study['losses'])}; {study['seeds']} seeds; "
        f"shared settings {json.dumps(study['train'])}.",
        "",
        "## Findings",
        "",
    ]
    lines += findings(results)
    lines += [
        "",
        "## Results",
        "",
        "Values: mean ± half-width of the 95% t-interval over seeds (finished runs only; no ± where the seeds agree "
        "to 3 significant figures). `real floor`: real train images scored like a generator against the real "
        "test split.",
        "",
    ]
    validation = results.get("validation")
    lines += [
        "| variant | " + " | ".join(_metric_name(m, validation) for m in metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
        "| better | " + " | ".join(BETTER.get(direction(m), "") for m in metrics) + " |",
    ]
    for variant, s in summary.items():
        lines.append(
            f"| {variant} | " + " | ".join(cell(s.get(m), interval=variant != "real floor") for m in metrics) + " |"
        )
    lines += ["", "## Which differences are real", ""]
    for metric, pairs in results["separated"].items():
        text = (
            "; ".join(f"{a} better than {b}" for a, b in pairs) or "no two variants separated (95% intervals overlap)"
        )
        lines.append(f"- {_metric_name(metric, validation)}: {text}")
    lines += ["", "## Metric validation", ""] + _validation_lines(results)
    lines += [
        "",
        "## Runs",
        "",
        "| run | status | steps | epochs | training (s) | evaluation (s) | wall time (s) | error |",
        "|---" * 8 + "|",
    ]
    for r in runs:
        wall, evaluating = r.get("wall_time_s"), r.get("eval_seconds") or 0.0
        times = [significant(wall - evaluating), significant(evaluating), significant(wall)] if wall else ["", "", ""]
        lines.append(
            f"| {r['name']} | {r['status']} | {r.get('steps', '')} | {r.get('epochs', '')} | "
            + " | ".join(times)
            + f" | {(r['error'] or '').replace('|', '/')[:200]} |"
        )
    failed = [r for r in runs if r["status"] != "finished"]
    if failed:
        lines += ["", f"{len(failed)} run(s) did not finish; they are left out of the table above."]
    return lines


def findings(results: dict) -> list[str]:
    """What the study found, in a few lines: the best variant on the validated metrics (or, without a
    validation, on the study's metrics, said so), which differences its intervals separate, and which not."""
    summary, study = results["summary"], results["study"]
    variants = [v for v in summary if v != "real floor"]
    failed = sum(r["status"] != "finished" for r in results["runs"])
    note = [f"{failed} run(s) did not finish and are left out (see Runs)."] if failed else []
    if len(variants) < 2:
        return [f"- {len(variants)} variant(s) finished: nothing to compare."] + ["- " + n for n in note]
    validation = results.get("validation")
    present = {m for v in variants for m in summary[v]}
    if validation and not validation.get("mismatch"):
        used = [m for m, ok in validation["passed"].items() if ok and m in present]
        basis = "the metrics that passed validation on this dataset"
    else:
        used = [m for m in study_columns(present) if separable(m)]
        basis = "the study's metrics; none is validated on this dataset yet: see Metric validation"
    rows = ranking(summary, used)
    if not rows:
        return ["- No metric to rank the variants by."] + ["- " + n for n in note]
    best = rows[0]["variant"]
    lines = [f"- Best: {best}, mean rank {rows[0]['mean_rank']:.2g} of {len(rows)} on {', '.join(used)} ({basis})."]
    if "c2st" in summary[best]:
        floor = summary.get("real floor", {}).get("c2st")
        c2st = summary[best]["c2st"]["mean"]
        lines.append(
            "- Its C2ST (how often a classifier tells its images from real ones; 0.5 = never): "
            f"{cell(summary[best]['c2st'])}"
            + (f", real floor {cell(floor, interval=False)}" if floor else "")
            + (
                "; its samples do not pass for real yet: train longer (--epochs, --max-minutes)."
                if c2st >= 0.95
                else "."
            )
        )
    by_pair: dict[tuple[str, str], list[str]] = {}
    for metric in used:
        for pair in results["separated"].get(metric, []):
            by_pair.setdefault(tuple(pair), []).append(metric)
    if by_pair:
        lines += [
            f"- Separated (95% intervals apart): {a} better than {b} on {', '.join(ms)}."
            for (a, b), ms in by_pair.items()
        ]
        apart = {m for ms in by_pair.values() for m in ms}
        unseparated = [m for m in used if separable(m) and m not in apart]
        if unseparated:
            lines.append(f"- Not separated on: {', '.join(unseparated)}.")
    else:
        lines.append(
            f"- No difference is separated at 95% on any of these metrics, so this ranking is not reliable: "
            f"add seeds (now {study['seeds']}) or training."
        )
    return lines + ["- " + n for n in note]


def _markdown_images(results: dict) -> list[str]:
    """Image links (relative to the study folder): real training images, each variant's last sample grid
    (seed 0) and its nearest-training-image pairs."""
    out = Path(results["study"]["out"])
    lines = ["## Samples (seed 0, last epoch) beside real training images", ""]
    for label, path in _grids(results):
        lines.append(f"![{label}]({os.path.relpath(path, out)})" if path else f"{label}: no images")
    return lines


def _grids(results: dict) -> list[tuple[str, Path | None]]:
    """(label, image) pairs: the real grid, then per variant its seed-0 run's latest sample grid."""
    seed0 = {r["variant"]: RunDir(r["dir"]) for r in results["runs"] if r["seed"] == 0}
    real = next((run.real_grid for run in seed0.values() if run.real_grid.exists()), None)
    return [("real training images", real)] + [(variant, run.latest_grid()) for variant, run in sorted(seed0.items())]


def _validation_lines(results: dict) -> list[str]:
    """Which metrics the validation passed, and the variants ranked by those metrics."""
    validation, study = results.get("validation"), results["study"]
    command = (
        f"`medgan validate-metrics --dataset {study['dataset']} --size {study['train'].get('size') or 28} "
        f"--out {study['out']}/validation`"
    )
    if not validation or validation.get("mismatch"):
        why = (
            f"The validation in {validation['path']} does not apply: {validation['mismatch']}. "
            if validation
            else "No metric validation for this dataset. "
        )
        return [
            why + f"Run {command}, then re-run this compare, to mark the metrics that do not notice disturbed "
            "real images here and to rank the variants by the ones that do."
        ]
    passed = [m for m, ok in validation["passed"].items() if ok]
    failed = [m for m, ok in validation["passed"].items() if not ok]
    lines = [
        f"From {validation['path']} (disturbed real images; see that file for the rule).",
        "",
        f"- passed: {', '.join(passed) or 'none'}",
        f"- not sensitive on this dataset: {', '.join(failed) or 'none'}",
    ]
    lines += [f"- not validated: {m} ({why})" for m, why in validation.get("not_validated", {}).items()]
    lines += ["", "## Ranking by the metrics that passed validation", ""]
    if not results.get("ranking"):
        return lines + [
            "No metric passed the validation on this dataset (or none of them is in the results): no ranking."
        ]
    used = sorted({m for row in results["ranking"] for m in row["ranks"]})
    lines += [
        "Rank 1 = best per metric (closest to good: lowest, highest, or nearest 1 / 0.5 / the real floor); "
        "mean rank over the metrics.",
        "",
        "| variant | mean rank | " + " | ".join(used) + " |",
        "|---" * (len(used) + 2) + "|",
    ]
    for row in results["ranking"]:
        lines.append(
            f"| {row['variant']} | {row['mean_rank']:.2f} | "
            + " | ".join(str(row["ranks"].get(m, "")) for m in used)
            + " |"
        )
    return lines


def write_report(results: dict, path: Path) -> None:
    """report.md's text, then curves, sample grids beside real ones, nearest-training pairs, extractor
    accuracy and environment; images embedded, nothing fetched."""
    runs = results["runs"]
    finished = [r for r in runs if r["status"] == "finished"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>medgan study</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}"
        ".grid{display:flex;flex-wrap:wrap;gap:8px}.grid img{width:260px}</style></head><body>",
    ]
    parts.append(f"<h1>medgan study: {html.escape(results['study']['dataset'])}</h1>")
    parts.append(_markdown_tables("\n".join(_text_sections(results)[1:])))
    validation = results.get("validation")
    if validation and not validation.get("mismatch"):
        link = html.escape(validation["path"])
        parts.append(
            f"<h2>Metric validation</h2><p>Table: <a href='{link}'>{link}</a></p>"
            + _file_img(Path(path).parent / Path(validation["path"]).with_suffix(".png"), "metric validation")
        )
    curves = [
        ("Losses per epoch (mean over seeds, band: min-max)", "epoch", CURVES, "D and G loss"),
        (
            "Metrics per epoch (mean over seeds, band: min-max)",
            "eval",
            ("fd_domain", "recall_domain"),
            "domain-extractor metrics",
        ),
    ]
    for heading, kind, keys, title in curves:
        figure = _curve_figure(finished, kind, keys, title) if finished else None
        parts.append(
            f"<h2>{heading}</h2>"
            + (_img(figure, title) if figure else "<p>Fewer than two points per run: no curve to draw.</p>")
        )
    parts.append(
        "<h2>Samples from the same fixed noise (seed 0, last epoch) beside real training images</h2><div class='grid'>"
    )
    for label, grid in _grids(results):
        parts.append(
            f"<figure>{_file_img(grid, label) if grid else 'no images'}"
            f"<figcaption>{html.escape(label)}</figcaption></figure>"
        )
    parts.append(
        "</div><h2>Nearest training images (top: generated, bottom: its nearest training image)</h2><div class='grid'>"
    )
    for variant in sorted({r["variant"] for r in runs}):
        run = next((r for r in runs if r["variant"] == variant and r["seed"] == 0), None)
        if run:
            parts.append(
                f"<figure>{_file_img(RunDir(run['dir']).nearest_train, variant)}"
                f"<figcaption>{html.escape(variant)}</figcaption></figure>"
            )
    parts.append("</div><h2>Domain feature extractor</h2>")
    accuracy = next((r["domain_extractor"] for r in finished if r.get("domain_extractor")), None)
    parts.append(
        f"<p>Test AUC {accuracy['domain_test_auc']:.3f}, ACC {accuracy['domain_test_acc']:.3f} "
        "on the real test split.</p>"
        if accuracy
        else "<p>not evaluated</p>"
    )
    versions = next((r["versions"] for r in runs if r.get("versions")), {})
    parts.append(
        "<h2>Environment</h2><p>"
        + html.escape(", ".join(f"{k} {v}" for k, v in versions.items()))
        + "; device "
        + html.escape(", ".join(sorted({str(r["device"]) for r in runs})))
        + f"; study wall time {significant(results['wall_time_s'])} s.</p>"
    )
    parts.append("</body></html>")
    files.write_text(path, "\n".join(parts))


def _markdown_tables(markdown: str) -> str:
    """The few markdown constructs report.md uses (tables, lists, paragraphs) as HTML."""
    out, table = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                table.append([html.escape(c.strip()) for c in line.strip("|").split("|")])
            continue
        if table:
            head, *rows = table
            out.append(
                "<table><tr>"
                + "".join(f"<th>{c}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
                + "</table>"
            )
            table = []
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 4)  # report.md's ## -> <h3> under the page's <h1>/<h2>
            out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(out)
