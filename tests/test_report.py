"""The study report's text: significant figures, intervals only where seeds differ, findings, and the
browser check's own failures (a console error, an image that does not decode, a remote resource)."""

import importlib.util
import math
import shutil
from pathlib import Path

import pytest

from medgan.study.aggregate import separations, summarise
from medgan.study.report import cell, findings, significant, to_markdown


@pytest.mark.parametrize(
    "value, text",
    [
        (0.39712, "0.397"),
        (676.9, "677"),
        (12345.0, "12300"),
        (1.0, "1"),
        (0.5, "0.5"),
        (0.000123456, "0.000123"),
        (math.nan, "n/a"),
        (-2.5e-5, "-2.5e-05"),
        (999.7, "1000"),
    ],
)
def test_significant_figures(value, text):
    assert significant(value) == text


def test_cells_show_an_interval_only_where_seeds_differ():
    assert cell(summarise([0.397, 0.397, 0.397 + 1e-17])) == "0.397"  # no "± 3.7e-17"
    assert cell(summarise([884.0, 334.0, 814.0])) == "677 ± 740"  # no "676.9 ± 7.4e+02"
    assert cell(summarise([0.8512, 0.8733, 0.8604])) == "0.862 ± 0.028"
    assert cell(summarise([0.7])) == "0.7"  # one seed: no interval
    assert cell(summarise([0.49, 0.51, 0.5]), interval=False) == "0.5"


def _results(values: dict[str, dict[str, list[float]]], seeds: int = 3) -> dict:
    """A study's results as compare writes them, from per-variant, per-metric values over seeds."""
    summary = {v: {m: summarise(xs) for m, xs in ms.items()} for v, ms in values.items()}
    summary["real floor"] = {
        "c2st": summarise([0.5] * seeds),
        "fd_domain": summarise([10.0] * seeds),
        "recall_domain": summarise([0.9] * seeds),
    }
    runs = [
        {
            "name": f"{v}-s{s}",
            "variant": v,
            "seed": s,
            "status": "finished",
            "error": None,
            "wall_time_s": 30.0,
            "eval_seconds": 3.0,
            "steps": 640,
            "epochs": 10,
            "dir": "/nonexistent",
        }
        for v in values
        for s in range(seeds)
    ]
    return {
        "study": {
            "dataset": "builtin",
            "models": ["dcgan"],
            "losses": ["gan", "lsgan"],
            "seeds": seeds,
            "train": {},
            "out": "study",
        },
        "runs": runs,
        "summary": summary,
        "separated": {m: separations(summary, m) for m in ("c2st", "fd_domain", "recall_domain")},
        "validation": None,
        "wall_time_s": 200.0,
    }


def test_findings_name_the_best_variant_and_what_separates():
    results = _results(
        {
            "dcgan-lsgan": {"c2st": [0.80, 0.82, 0.81], "fd_domain": [40, 42, 41], "recall_domain": [0.5, 0.7, 0.3]},
            "dcgan-gan": {"c2st": [0.99, 1.0, 0.98], "fd_domain": [90, 95, 93], "recall_domain": [0.4, 0.6, 0.5]},
        }
    )
    text = "\n".join(findings(results))
    assert "Best: dcgan-lsgan" in text
    assert "dcgan-lsgan better than dcgan-gan on c2st, fd_domain" in text
    assert "Not separated on: recall_domain" in text
    assert "none is validated on this dataset" in text and "0.81 ± 0.025" in text and "real floor 0.5" in text


def test_findings_say_when_nothing_separates():
    results = _results({"dcgan-lsgan": {"c2st": [0.8, 1.0, 0.9]}, "dcgan-gan": {"c2st": [0.85, 1.0, 0.95]}})
    text = "\n".join(findings(results))
    assert "No difference is separated at 95%" in text and "add seeds (now 3)" in text


def test_report_md_has_findings_directions_times_and_no_noise_digits():
    results = _results(
        {
            "dcgan-lsgan": {"c2st": [0.397, 0.397, 0.397], "fd_domain": [884, 334, 814]},
            "dcgan-gan": {"c2st": [0.9, 0.92, 0.91], "fd_domain": [900, 950, 990]},
        }
    )
    report = to_markdown(results)
    assert report.index("## Findings") < report.index("## Results")
    assert "| better | → 0.5 | lower |" in report
    assert "| real floor | 0.5 | 10 |" in report  # floor rows: no interval
    assert "e-17" not in report and "e+02" not in report and "677 ± 740" in report
    assert "| dcgan-lsgan-s0 | finished | 640 | 10 | 27 | 3 | 30 |" in report
    assert "real training images: no images" in report  # the run directories do not exist here


def _checker():
    spec = importlib.util.spec_from_file_location(
        "check_report", Path(__file__).parents[1] / "scripts" / "check_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="


def test_the_browser_check_finds_remote_references_without_a_browser(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(
        "<html><body><img src='https://example.invalid/a.png'>"
        '<div style="background:url(//cdn.invalid/x.css)"></div></body></html>'
    )
    assert len(_checker().REMOTE.findall(page.read_text())) == 2
    assert not _checker().REMOTE.findall(
        f"<a href='validation/validation.md'>v</a><img src='data:image/png;base64,{PNG}'>"
    )


@pytest.mark.skipif(
    not shutil.which("chromium"), reason="Debian's chromium is not installed (apt-get install chromium)"
)
@pytest.mark.parametrize(
    "body, problem",
    [
        (f"<img src='data:image/png;base64,{PNG}'>", None),
        ("<script>console.error('broken')</script>", "console"),
        ("<img src='data:image/png;base64,AAAA'>", "did not decode"),
        ("<img src='https://example.invalid/a.png'>", "remote resource"),
    ],
)
def test_the_browser_check_fails_on_console_errors_broken_images_and_remote_resources(tmp_path, body, problem):
    page = tmp_path / "report.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")
    problems = _checker().check(page)
    assert (problems == []) if problem is None else any(problem in p for p in problems), problems
