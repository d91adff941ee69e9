"""``report.html``: one self-contained page (images embedded) for a study, plotted with matplotlib."""

from __future__ import annotations

import base64
import html
import io as bytesio
import json
from pathlib import Path

import numpy as np

CURVES = ("d_loss", "g_loss")


def _png(fig) -> str:
    buffer = bytesio.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _file_img(path: Path, alt: str) -> str:
    return _img(base64.b64encode(path.read_bytes()).decode(), alt) if path.exists() else f"<em>{html.escape(alt)}: missing</em>"


def _records(run: dict, kind: str) -> list[dict]:
    path = Path(run["dir"]) / "metrics.jsonl"
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("kind") == kind]


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


def write_report(results: dict, path: Path) -> None:
    """Results table, curves, sample grids, nearest-training pairs, extractor accuracy, environment."""
    from medgan import io
    from medgan.study.compare import to_markdown

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
            grids = sorted((Path(run["dir"]) / "samples").glob("epoch_*.png"))
            parts.append(f"<figure>{_file_img(grids[-1], variant) if grids else 'no samples'}<figcaption>{html.escape(variant)}</figcaption></figure>")
    parts.append("</div><h2>Nearest training images (top: generated, bottom: its nearest training image)</h2><div class='grid'>")
    for variant in variants:
        run = next((r for r in runs if r["variant"] == variant and r["seed"] == 0), None)
        if run:
            parts.append(f"<figure>{_file_img(Path(run['dir']) / 'nearest_train.png', variant)}<figcaption>{html.escape(variant)}</figcaption></figure>")
    parts.append("</div><h2>Domain feature extractor</h2>")
    accuracy = next((r["domain_extractor"] for r in finished if r.get("domain_extractor")), None)
    parts.append(f"<p>Test AUC {accuracy['domain_test_auc']:.3f}, ACC {accuracy['domain_test_acc']:.3f} on the real test split.</p>" if accuracy else "<p>not evaluated</p>")
    versions = next((r["versions"] for r in runs if r.get("versions")), {})
    parts.append("<h2>Environment</h2><p>" + html.escape(", ".join(f"{k} {v}" for k, v in versions.items())) + "; device "
                 + html.escape(", ".join(sorted({str(r['device']) for r in runs}))) + f"; study wall time {results['wall_time_s']:.0f} s.</p>")
    parts.append("</body></html>")
    io.write_text(path, "\n".join(parts))


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
