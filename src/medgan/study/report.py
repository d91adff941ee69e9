"""A study's reports: ``results.csv``, ``report.md`` and ``report.html`` (one self-contained page, images
embedded, plotted with matplotlib). All study rendering lives here."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from medgan import files
from medgan.metrics.catalogue import study_columns
from medgan.rundir import RunDir

CURVES = ("d_loss", "g_loss")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _file_img(path: Path, alt: str) -> str:
    return _img(base64.b64encode(path.read_bytes()).decode(), alt) if path.exists() else f"<em>{html.escape(alt)}: missing</em>"


def _records(run: dict, kind: str) -> list[dict]:
    return RunDir(run["dir"]).read_records(kind)


def _curve_figure(runs: list[dict], kind: str, keys: tuple[str, ...], title: str):
    """Per variant: mean over seeds of each key against epoch, with a min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.2), squeeze=False)
    for variant in sorted({r["variant"] for r in runs}):
        series = [_records(r, kind) for r in runs if r["variant"] == variant]
        for ax, key in zip(axes[0], keys):
            by_epoch: dict[int, list[float]] = {}
            for records in series:
                for rec in records:
                    if key in rec:
                        by_epoch.setdefault(rec["epoch"], []).append(rec[key])
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            values = [np.array(by_epoch[e]) for e in epochs]
            line = ax.plot(epochs, [v.mean() for v in values], marker="o", ms=3, label=variant)[0]
            ax.fill_between(epochs, [v.min() for v in values], [v.max() for v in values], alpha=0.2, color=line.get_color())
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


def _cell(s: dict | None) -> str:
    if not s:
        return ""
    if math.isnan(s["ci95"]):
        return f"{s['mean']:.4g}"
    return f"{s['mean']:.4g} ± {s['ci95']:.2g}"


def to_markdown(results: dict) -> str:
    """report.md: the results table (mean ± 95% CI over seeds), separations, failed runs, wall times."""
    summary, runs = results["summary"], results["runs"]
    metrics = study_columns(m for s in summary.values() for m in s)
    study = results["study"]
    lines = [f"# Study: {study['dataset']}", "",
             f"Models {', '.join(study['models'])}; losses {', '.join(study['losses'])}; {study['seeds']} seeds; "
             f"shared settings {json.dumps(study['train'])}.", "",
             "Values: mean ± half-width of the 95% t-interval over seeds (finished runs only). "
             "`real floor`: real train images scored like a generator against the real test split.", ""]
    validation = results.get("validation")
    lines += ["| variant | " + " | ".join(_metric_name(m, validation) for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for variant, s in summary.items():
        lines.append(f"| {variant} | " + " | ".join(_cell(s.get(m)) for m in metrics) + " |")
    lines += ["", "## Which differences are real", ""]
    for metric, pairs in results["separated"].items():
        text = "; ".join(f"{a} better than {b}" for a, b in pairs) or "no two variants separated (95% intervals overlap)"
        lines.append(f"- {_metric_name(metric, validation)}: {text}")
    lines += ["", "## Metric validation", ""] + _validation_lines(results)
    failed = [r for r in runs if r["status"] != "finished"]
    lines += ["", "## Runs", "", "| run | status | wall time (s) | error |", "|---|---|---|---|"]
    for r in runs:
        wall = f"{r['wall_time_s']:.1f}" if r["wall_time_s"] else ""
        lines.append(f"| {r['name']} | {r['status']} | {wall} | {(r['error'] or '').replace('|', '/')[:200]} |")
    if failed:
        lines += ["", f"{len(failed)} run(s) did not finish; they are left out of the table above."]
    return "\n".join(lines) + "\n"


def _validation_lines(results: dict) -> list[str]:
    """Which metrics the validation passed, and the variants ranked by those metrics."""
    validation, study = results.get("validation"), results["study"]
    command = (f"`medgan validate-metrics --dataset {study['dataset']} --size {study['train'].get('size') or 28} "
               f"--out {study['out']}/validation`")
    if not validation or validation.get("mismatch"):
        why = f"The validation in {validation['path']} does not apply: {validation['mismatch']}. " if validation else "No metric validation for this dataset. "
        return [why + f"Run {command}, then re-run this compare, to mark the metrics that do not notice disturbed "
                "real images here and to rank the variants by the ones that do."]
    passed = [m for m, ok in validation["passed"].items() if ok]
    failed = [m for m, ok in validation["passed"].items() if not ok]
    lines = [f"From {validation['path']} (disturbed real images; see that file for the rule).", "",
             f"- passed: {', '.join(passed) or 'none'}", f"- not sensitive on this dataset: {', '.join(failed) or 'none'}"]
    lines += [f"- not validated: {m} ({why})" for m, why in validation.get("not_validated", {}).items()]
    lines += ["", "## Ranking by the metrics that passed validation", ""]
    if not results.get("ranking"):
        return lines + ["No metric passed the validation on this dataset (or none of them is in the results): no ranking."]
    used = sorted({m for row in results["ranking"] for m in row["ranks"]})
    lines += ["Rank 1 = best per metric (closest to good: lowest, highest, or nearest 1 / 0.5 / the real floor); "
              "mean rank over the metrics.", "",
              "| variant | mean rank | " + " | ".join(used) + " |", "|---" * (len(used) + 2) + "|"]
    for row in results["ranking"]:
        lines.append(f"| {row['variant']} | {row['mean_rank']:.2f} | " + " | ".join(str(row["ranks"].get(m, "")) for m in used) + " |")
    return lines


def write_report(results: dict, path: Path) -> None:
    """Results table, curves, sample grids, nearest-training pairs, extractor accuracy, environment."""
    runs = results["runs"]
    finished = [r for r in runs if r["status"] == "finished"]
    variants = sorted({r["variant"] for r in runs})
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>medgan study</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:8px}.grid img{width:260px}</style></head><body>"]
    parts.append(f"<h1>medgan study: {html.escape(results['study']['dataset'])}</h1>")
    parts.append("<h2>Results</h2>" + _markdown_tables(to_markdown(results)))
    validation = results.get("validation")
    if validation and not validation.get("mismatch"):
        link = html.escape(validation["path"])
        parts.append(f"<h2>Metric validation</h2><p>Table: <a href='{link}'>{link}</a></p>"
                     + _file_img(Path(path).parent / Path(validation["path"]).with_suffix(".png"), "metric validation"))
    if finished:
        parts.append("<h2>Losses per epoch (mean over seeds, band: min-max)</h2>" + _img(_curve_figure(finished, "epoch", CURVES, "D and G loss"), "loss curves"))
        metric_keys = tuple(k for k in ("fd_domain", "recall_domain") if any(k in r["metrics"] for r in finished))
        if metric_keys:
            parts.append("<h2>Metrics per epoch</h2>" + _img(_curve_figure(finished, "eval", metric_keys, "domain-extractor metrics"), "metric curves"))
    parts.append("<h2>Samples from the same fixed noise (seed 0, last epoch)</h2><div class='grid'>")
    for variant in variants:
        run = next((r for r in runs if r["variant"] == variant and r["seed"] == 0), None)
        if run:
            grid = RunDir(run["dir"]).latest_grid()
            parts.append(f"<figure>{_file_img(grid, variant) if grid else 'no samples'}<figcaption>{html.escape(variant)}</figcaption></figure>")
    parts.append("</div><h2>Nearest training images (top: generated, bottom: its nearest training image)</h2><div class='grid'>")
    for variant in variants:
        run = next((r for r in runs if r["variant"] == variant and r["seed"] == 0), None)
        if run:
            parts.append(f"<figure>{_file_img(RunDir(run['dir']).nearest_train, variant)}<figcaption>{html.escape(variant)}</figcaption></figure>")
    parts.append("</div><h2>Domain feature extractor</h2>")
    accuracy = next((r["domain_extractor"] for r in finished if r.get("domain_extractor")), None)
    parts.append(f"<p>Test AUC {accuracy['domain_test_auc']:.3f}, ACC {accuracy['domain_test_acc']:.3f} on the real test split.</p>" if accuracy else "<p>not evaluated</p>")
    versions = next((r["versions"] for r in runs if r.get("versions")), {})
    parts.append("<h2>Environment</h2><p>" + html.escape(", ".join(f"{k} {v}" for k, v in versions.items())) + "; device "
                 + html.escape(", ".join(sorted({str(r['device']) for r in runs}))) + f"; study wall time {results['wall_time_s']:.0f} s.</p>")
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
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "</table>")
            table = []
        if line.startswith("#"):
            out.append(f"<h3>{html.escape(line.lstrip('# '))}</h3>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(out)
