import json
import math
import shutil
from pathlib import Path

import pytest

from conftest import write_medmnist
from medgan.cli import main
from medgan.study.aggregate import aggregate, separations, summarise
from medgan.study.compare import compare


def test_summarise_against_direct_computation():
    s = summarise([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["mean"] == 2.5
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))
    assert s["ci95"] == pytest.approx(3.182446305284263 * math.sqrt(5 / 3) / 2)
    assert math.isnan(summarise([1.0])["ci95"])


def test_aggregate_and_separations():
    runs = [
        {"variant": v, "status": "finished", "metrics": {"fd_domain": x, "fd_domain_floor": 0.5}}
        for v, xs in {"a": [1.0, 1.1, 0.9], "b": [5.0, 5.2, 4.8], "c": [1.0, 6.0, 3.0]}.items()
        for x in xs
    ]
    runs.append({"variant": "a", "status": "failed", "metrics": {}})
    summary = aggregate(runs)
    assert summary["a"]["fd_domain"]["mean"] == pytest.approx(1.0) and summary["a"]["fd_domain"]["n"] == 3
    assert summary["real floor"]["fd_domain"]["mean"] == 0.5
    assert separations(summary, "fd_domain") == [("a", "b")]  # c's interval overlaps both


def test_separations_follow_the_catalogue_direction():
    def summary_of(metric, values):
        return aggregate(
            [{"variant": v, "status": "finished", "metrics": {metric: x}} for v, xs in values.items() for x in xs]
        )

    recall = summary_of("recall_domain", {"low": [0.2, 0.21, 0.19], "high": [0.8, 0.81, 0.79]})
    assert separations(recall, "recall_domain") == [("high", "low")]  # higher is better
    # C2ST's target is 0.5: an interval around 0.5 beats one far above it, and one as far below it
    c2st = summary_of(
        "c2st",
        {
            "at_half": [0.49, 0.5, 0.51],
            "far": [0.9, 0.91, 0.89],
            "below": [0.1, 0.11, 0.09],
            "near": [0.55, 0.56, 0.54],
        },
    )
    assert separations(c2st, "c2st") == [
        ("at_half", "below"),
        ("at_half", "far"),
        ("at_half", "near"),
        ("near", "below"),
        ("near", "far"),
    ]


@pytest.mark.slow
def test_two_variants_two_seeds_end_to_end(tiny_study, capsys):
    results = compare(tiny_study)
    out = tiny_study.out
    names = sorted(p.name for p in (Path(out) / "runs").iterdir())
    assert names == ["mlp-hinge-s0", "mlp-hinge-s1", "mlp-lsgan-s0", "mlp-lsgan-s1"]
    assert all(r["status"] == "finished" and "fd_domain" in r["metrics"] for r in results["runs"])
    summary = results["summary"]
    assert set(summary) == {"mlp-lsgan", "mlp-hinge", "real floor"} and summary["mlp-lsgan"]["fd_domain"]["n"] == 2
    direct = [r["metrics"]["fd_domain"] for r in results["runs"] if r["variant"] == "mlp-hinge"]
    assert summary["mlp-hinge"]["fd_domain"]["mean"] == pytest.approx(sum(direct) / 2)
    report = open(f"{out}/report.md").read()
    assert "mlp-lsgan" in report and "mlp-hinge" in report and "real floor" in report
    assert open(f"{tiny_study.out}/results.csv").readline().startswith("variant,metric,n,mean,std,ci95")
    # same settings for every run except model/loss/seed
    configs = [open(f"{tiny_study.out}/runs/{n}/config.toml").read() for n in names]
    strip = lambda text: [l for l in text.splitlines() if not l.startswith(("loss", "seed", "out", "n_critic"))]
    assert all(strip(c) == strip(configs[0]) for c in configs)
    progress = capsys.readouterr().out
    assert all(f"{n} " in progress for n in names) and "fd_domain" in progress  # one line per finished run


@pytest.mark.slow
def test_rerun_skips_finished_and_resumes_unfinished(finished_tiny_study, monkeypatch):
    tiny_study = finished_tiny_study
    compare(tiny_study)
    interrupted = f"{tiny_study.out}/runs/mlp-hinge-s1/run.json"
    info = json.load(open(interrupted))
    info["status"] = "interrupted"
    json.dump(info, open(interrupted, "w"))
    from medgan.train import Trainer

    calls = []
    original = Trainer.fit
    monkeypatch.setattr(
        Trainer, "fit", lambda self, resume=False: calls.append((self.cfg.out, resume)) or original(self, resume)
    )
    results = compare(tiny_study)
    assert calls == [(f"{tiny_study.out}/runs/mlp-hinge-s1", True)]
    assert all(r["status"] == "finished" for r in results["runs"])


@pytest.mark.slow
def test_failed_run_is_recorded_and_the_others_finish(tiny_study, nan_loss):
    tiny_study.losses = ["lsgan", nan_loss]
    results = compare(tiny_study)
    status = {r["name"]: r["status"] for r in results["runs"]}
    assert status == {
        "mlp-lsgan-s0": "finished",
        "mlp-lsgan-s1": "finished",
        "mlp-test-nan-s0": "failed",
        "mlp-test-nan-s1": "failed",
    }
    assert "non-finite" in next(r for r in results["runs"] if r["status"] == "failed")["error"]
    assert "mlp-test-nan" not in results["summary"]
    report = open(f"{tiny_study.out}/report.md").read()
    assert "failed" in report and "did not finish" in report


@pytest.mark.slow
def test_compare_cli_and_bad_preset(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "20")
    root = write_medmnist(tmp_path / "data", n=(96, 16, 32))
    assert (
        main(
            [
                "compare",
                "--dataset",
                "pneumoniamnist",
                "--data-root",
                str(root),
                "--models",
                "mlp",
                "--losses",
                "gan",
                "--seeds",
                "2",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--eval-samples",
                "32",
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    assert "report.md" in capsys.readouterr().out
    assert main(["compare", "--preset", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["compare", "--losses", "wgangp", "--out", str(tmp_path / "t")]) == 2


@pytest.mark.slow
def test_report_html_is_self_contained_and_names_every_variant(finished_tiny_study):
    tiny_study = finished_tiny_study
    compare(tiny_study)
    page = (Path(tiny_study.out) / "report.html").read_text()
    assert "mlp-lsgan" in page and "mlp-hinge" in page and "real floor" in page
    assert page.count("data:image/png;base64,") == 1 + 2 + 2  # real grid, sample grids, nearest-train pairs
    assert page.count("no curve to draw") == 2  # one epoch, one evaluation per run: no curves
    assert 'src="http' not in page and "missing" not in page
    assert "<h3>Findings</h3>" in page and "real training images" in page
    assert "Test AUC" in page and "torch" in page


@pytest.mark.slow
@pytest.mark.skipif(
    not shutil.which("chromium"), reason="Debian's chromium is not installed (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(finished_tiny_study):
    import importlib.util

    tiny_study = finished_tiny_study
    compare(tiny_study)
    spec = importlib.util.spec_from_file_location(
        "check_report", Path(__file__).parents[1] / "scripts" / "check_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.check(Path(tiny_study.out) / "report.html") == []


def test_study_file(tmp_path, capsys, monkeypatch):
    from medgan.study.compare import load_study_file, study_from_args

    path = tmp_path / "study.toml"
    path.write_text('preset = "quickstart"\nlosses = ["lsgan"]\nseeds = 1\n[train]\nepochs = 2\n')
    study = study_from_args(None, load_study_file(path), seeds=2)
    assert (study.dataset, study.models, study.losses, study.seeds) == ("builtin", ["mlp", "dcgan"], ["lsgan"], 2)
    assert study.train["epochs"] == 2 and study.train["width"] == 32  # file over preset, flags over file
    path.write_text("lr = 0.1\n")
    assert main(["compare", "--config", str(path)]) == 2
    assert "training settings go under [train]" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_backend_gives_the_same_results_table(finished_tiny_study, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray>=2.9')")
    import ray

    tiny_study = finished_tiny_study
    local = compare(tiny_study)
    tiny_study.out = str(tmp_path / "ray-study")
    try:
        remote = compare(tiny_study, backend="ray")
    finally:
        ray.shutdown()
    assert [r["name"] for r in remote["runs"]] == [r["name"] for r in local["runs"]]
    assert json.dumps(remote["summary"]) == json.dumps(local["summary"])  # identical, not just close


def test_ranking_by_badness_of_the_means():
    from medgan.study.aggregate import ranking

    s = lambda mean: {"n": 2, "mean": mean, "std": 0.1, "ci95": 0.5}  # noqa: E731
    summary = {
        "a": {"fd_domain": s(5.0), "c2st": s(0.9), "diversity_ssim": s(0.30)},
        "b": {"fd_domain": s(2.0), "c2st": s(0.6), "diversity_ssim": s(0.45)},
        "real floor": {"fd_domain": s(0.1), "c2st": s(0.5), "diversity_ssim": s(0.35)},
    }
    rows = ranking(summary, ["fd_domain", "c2st", "diversity_ssim"])
    assert [r["variant"] for r in rows] == ["b", "a"]
    assert rows[0]["ranks"] == {"fd_domain": 1, "c2st": 1, "diversity_ssim": 2}  # 0.45 is farther from the floor 0.35
    assert rows[1]["mean_rank"] == pytest.approx(5 / 3)
    assert ranking(summary, []) == []


@pytest.mark.slow
def test_report_marks_metrics_the_validation_failed_and_ranks_by_the_rest(finished_tiny_study):
    tiny_study = finished_tiny_study
    validation = {
        "dataset": "pneumoniamnist",
        "size": 28,
        "not_validated": {"near_copies": "memorisation"},
        "metrics": {"fd_domain": {"passed": True}, "kid_domain": {"passed": False}, "c2st": {"passed": True}},
    }
    folder = Path(tiny_study.out) / "validation"
    folder.mkdir(parents=True)
    (folder / "validation.json").write_text(json.dumps(validation))
    (folder / "validation.png").write_bytes(b"\x89PNG not a real image")
    results = compare(tiny_study)
    report = (Path(tiny_study.out) / "report.md").read_text()
    assert "| kid_domain (not sensitive on this dataset) |" in report
    assert "fd_domain (not sensitive" not in report and "| fd_domain |" in report
    assert "- not sensitive on this dataset: kid_domain" in report
    assert [m for row in results["ranking"] for m in row["ranks"]] and all(
        set(row["ranks"]) <= {"fd_domain", "c2st"} for row in results["ranking"]
    )
    assert (
        "## Ranking by the metrics that passed validation" in report
        and "| mlp-lsgan |" in report.split("## Ranking")[1]
    )
    page = (Path(tiny_study.out) / "report.html").read_text()
    assert "kid_domain (not sensitive on this dataset)" in page and "validation/validation.md" in page


@pytest.mark.slow
def test_report_says_how_to_validate_when_no_validation(tiny_study):
    tiny_study.seeds = 1
    tiny_study.losses = ["lsgan"]
    compare(tiny_study)
    report = (Path(tiny_study.out) / "report.md").read_text()
    assert (
        "No metric validation for this dataset" in report
        and "medgan validate-metrics --dataset pneumoniamnist" in report
    )
    assert "not sensitive on this dataset" not in report
