"""``medgan compare``: train every model x loss x seed under identical settings, then aggregate.

Runs go to ``OUT/runs/<model>-<loss>-s<seed>/``. Re-running the same command skips finished runs and
resumes unfinished ones; a run that fails is recorded with its error and the others go on.
"""

from __future__ import annotations

import csv
import io as stringio
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from medgan import MedganError, io
from medgan.config import TrainConfig
from medgan.study.aggregate import LOWER_IS_BETTER, aggregate, ranking, separations

PRESETS: dict[str, dict] = {
    # The README's main job: the built-in dataset, all four seed losses, a few epochs, < 5 min on 2 CPU cores.
    "quickstart": {"dataset": "builtin", "models": ["dcgan"], "losses": ["gan", "lsgan", "wgan", "wgan-gp"],
                   "seeds": 3, "train": {"epochs": 4, "width": 32, "eval_samples": 1000}},
    # Seed 000/001: MLP nets on ChestMNIST, LSGAN/WGAN/WGAN-GP, 50 epochs, batch 64, Adam 2e-4 (0.5, 0.999).
    "seed-chestmnist": {"dataset": "chestmnist", "models": ["mlp"], "losses": ["lsgan", "wgan", "wgan-gp"],
                        "seeds": 3, "train": {"epochs": 50, "batch_size": 64, "lr": 2e-4}},
    # Seed 003: conv nets with batch norm (none in the critics), grayscale RetinaMNIST, n_critic 5 for the WGANs.
    "seed-retinamnist": {"dataset": "retinamnist", "models": ["dcgan"], "losses": ["lsgan", "wgan", "wgan-gp"],
                         "seeds": 3, "train": {"epochs": 50, "batch_size": 64, "lr": 2e-4, "channels": 1}},
    # Seed 002: BCE GAN, MLP G with batch norm, LeakyReLU D, PathMNIST converted to grayscale.
    "seed-pathmnist": {"dataset": "pathmnist", "models": ["mlp-bn"], "losses": ["gan"],
                       "seeds": 3, "train": {"epochs": 50, "batch_size": 64, "lr": 2e-4, "channels": 1}},
}
HEADLINE = "fd_domain"
VALIDATION = Path("validation") / "validation.json"  # inside the study folder: see load_validation


@dataclass
class Study:
    dataset: str = "builtin"
    models: list[str] = field(default_factory=lambda: ["mlp"])
    losses: list[str] = field(default_factory=lambda: ["gan", "lsgan", "wgan", "wgan-gp"])
    seeds: int = 3
    train: dict = field(default_factory=dict)  # TrainConfig keys shared by every run
    out: str = "study"

    def runs(self) -> list[tuple[str, TrainConfig]]:
        """(name, config) of every run; only model, loss and seed differ between them."""
        from medgan.config import from_dict

        base = from_dict({"dataset": self.dataset, **self.train})
        return [
            (f"{m}-{l}-s{s}", base.replace(model=m, loss=l, seed=s, out=str(Path(self.out) / "runs" / f"{m}-{l}-s{s}")))
            for m in self.models for l in self.losses for s in range(self.seeds)
        ]


def _last(records: list[dict], kind: str) -> dict:
    found = [r for r in records if r.get("kind") == kind]
    return found[-1] if found else {}


def summarise_run(name: str, cfg: TrainConfig, error: str | None = None) -> dict:
    """One run's record: its status, final eval metrics and wall time, read back from its directory."""
    run_dir = Path(cfg.out)
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
    records = [json.loads(line) for line in lines if line]
    evaluation = {k: v for k, v in _last(records, "eval").items() if k not in ("kind", "step", "epoch", "eval_time_s", "domain_test_auc", "domain_test_acc")}
    return {
        "name": name, "variant": f"{cfg.model}-{cfg.loss}", "model": cfg.model, "loss": cfg.loss, "seed": cfg.seed,
        "status": info.get("status", "failed" if error else "missing"), "error": error or info.get("error"),
        "wall_time_s": info.get("wall_time_s"), "device": info.get("device"), "metrics": evaluation,
        "domain_extractor": {k: _last(records, "eval")[k] for k in ("domain_test_auc", "domain_test_acc") if k in _last(records, "eval")},
        "versions": info.get("versions", {}), "dir": str(run_dir),
    }


def run_one(name: str, cfg: TrainConfig) -> dict:
    """Train one run unless it is finished; resume it if it has a checkpoint. Never raises."""
    from medgan.train import CHECKPOINT, Trainer

    run_dir = Path(cfg.out)
    status = json.loads((run_dir / "run.json").read_text()).get("status") if (run_dir / "run.json").exists() else None
    if status == "finished":
        return summarise_run(name, cfg)
    try:
        Trainer(cfg, progress=False).fit(resume=(run_dir / CHECKPOINT).exists())
    except KeyboardInterrupt:
        raise
    except Exception as e:  # a failed run is recorded, the study goes on
        return summarise_run(name, cfg, error=f"{type(e).__name__}: {e}")
    return summarise_run(name, cfg)


def _run_in_ray_worker(name: str, cfg: TrainConfig, threads: int) -> dict:
    """A Ray task with as many torch threads as the driver: the same float reduction order as a local
    run, hence the same results; Ray reserves that many CPUs per task so tasks never oversubscribe."""
    import torch

    torch.set_num_threads(threads)
    return run_one(name, cfg)


def run_all(specs: list[tuple[str, TrainConfig]], backend: str = "local", ray_address: str | None = None):
    """Yield each run's record as it finishes: in sequence here, or as Ray tasks (1 GPU each when the
    cluster has GPUs) on a local Ray instance or the cluster at ``ray_address``."""
    if backend == "local":
        yield from (run_one(name, cfg) for name, cfg in specs)
        return
    if backend != "ray":
        raise MedganError(f"backend must be local or ray, got {backend!r}")
    try:
        import ray
    except ImportError:
        raise MedganError("--backend ray needs Ray: pip install 'ray>=2.9'") from None
    ray.init(address=ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    import torch

    threads = torch.get_num_threads()
    gpus = ray.cluster_resources().get("GPU", 0)
    task = ray.remote(num_cpus=threads, num_gpus=1 if gpus else 0)(_run_in_ray_worker)
    pending = [task.remote(name, cfg, threads) for name, cfg in specs]
    while pending:
        done, pending = ray.wait(pending)
        yield from ray.get(done)


def compare(study: Study, backend: str = "local", ray_address: str | None = None) -> dict:
    """Run (or skip/resume) every run of the study, then write results.json, results.csv, report.md and report.html."""
    from tqdm.auto import tqdm

    out = Path(study.out)
    out.mkdir(parents=True, exist_ok=True)
    io.write_json(out / "study.json", study.__dict__)
    specs = study.runs()
    records = []
    start = time.time()
    with tqdm(total=len(specs), unit="run", desc="study", disable=None) as bar:
        for record in run_all(specs, backend, ray_address):
            records.append(record)
            headline = record["metrics"].get(HEADLINE)
            detail = f"{HEADLINE} {headline:.4g}" if headline is not None else (record["error"] or "")
            wall = f"{record['wall_time_s']:7.1f} s" if record["wall_time_s"] else ""
            bar.write(f"{record['name']:<28} {record['status']:<9} {wall}  {detail}")
            bar.update(1)
    order = [name for name, _ in specs]
    records.sort(key=lambda r: order.index(r["name"]))
    summary = aggregate(records)
    results = {"study": study.__dict__, "runs": records, "summary": summary,
               "separated": {m: separations(summary, m) for m in LOWER_IS_BETTER if any(m in s for s in summary.values())},
               "validation": load_validation(study), "wall_time_s": time.time() - start}
    if results["validation"]:
        passed = [m for m, ok in results["validation"]["passed"].items() if ok]
        results["ranking"] = ranking(summary, passed)
    io.write_json(out / "results.json", results)
    io.write_text(out / "results.csv", to_csv(summary))
    io.write_text(out / "report.md", to_markdown(results))
    from medgan.study.report import write_report

    write_report(results, out / "report.html")
    return results


def load_validation(study: Study) -> dict | None:
    """The metric validation in ``OUT/validation/`` (written by ``medgan validate-metrics --out OUT/validation``)
    when it is for the study's dataset and image size: its path and which metrics passed."""
    path = Path(study.out) / VALIDATION
    if not path.exists():
        return None
    validation = json.loads(path.read_text())
    size = study.train.get("size") or 28
    if (validation["dataset"], validation["size"]) != (study.dataset, size):
        return {"path": str(VALIDATION.with_suffix(".md")), "passed": {}, "mismatch":
                f"it is for {validation['dataset']} at {validation['size']} px, the study {study.dataset} at {size} px"}
    return {"path": str(VALIDATION.with_suffix(".md")), "passed": {m: row["passed"] for m, row in validation["metrics"].items()},
            "not_validated": validation.get("not_validated", {})}


def _metric_name(metric: str, validation: dict | None) -> str:
    if validation and validation["passed"].get(metric) is False:
        return f"{metric} (not sensitive on this dataset)"
    return metric


def to_csv(summary: dict) -> str:
    buffer = stringio.StringIO()
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
    metrics = [m for m in ("c2st", "fd_domain", "kid_domain", "precision_domain", "recall_domain", "coverage_domain",
                           "diversity_ssim", "near_copies", "tstr_auc", "tstr_acc") if any(m in s for s in summary.values())]
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


def load_study_file(path: str | Path) -> dict:
    """A TOML study file: dataset, models, losses, seeds, out, preset at top level; shared settings under [train]."""
    from medgan.config import tomllib

    try:
        values = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MedganError(f"study file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise MedganError(f"study file {path} is not valid TOML: {e}") from None
    allowed = {"preset", "dataset", "models", "losses", "seeds", "out", "train"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise MedganError(f"{path}: unknown study key(s) {unknown}; valid: {sorted(allowed)} (training settings go under [train])")
    return values


def study_from_args(preset: str | None, file: dict | None = None, **given) -> Study:
    """A study from a preset, then a study file, then command-line values (each overriding the one before)."""
    file = dict(file or {})
    preset = preset or file.pop("preset", None)
    file.pop("preset", None)
    if preset and preset not in PRESETS:
        raise MedganError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values = dict(PRESETS.get(preset, {}))
    train = dict(values.pop("train", {}))
    train.update(file.pop("train", {}))
    values.update(file)
    train.update(given.pop("train", {}))
    values.update({k: v for k, v in given.items() if v is not None})
    return Study(**values, train=train)
