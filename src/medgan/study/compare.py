"""``medgan compare``: train every model x loss x seed under identical settings, then aggregate.

Runs go to ``OUT/runs/<model>-<loss>-s<seed>/``. Re-running the same command skips finished runs and
resumes unfinished ones; a run that fails is recorded with its error and the others go on.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from medgan import MedganError, MedganWarning, files
from medgan.config import TrainConfig, from_dict, layered, read_toml
from medgan.metrics.catalogue import separable
from medgan.packed import Pack, auto_pack_size, pack_key
from medgan.rundir import RunDir
from medgan.study.aggregate import aggregate, ranking, separations
from medgan.study.report import write_reports
from medgan.train import Trainer

STUDY_PRESETS: dict[str, dict] = {
    # The README's main job: the seed notebooks' MLP nets against DCGAN nets, LSGAN, 3 seeds, on the built-in set in
    # grayscale; one evaluation per run, at the end. Chosen by measurement to fit 5 minutes on the 2-core CPU.
    "quickstart": {
        "dataset": "builtin",
        "models": ["mlp", "dcgan"],
        "losses": ["lsgan"],
        "seeds": 3,
        "train": {"epochs": 10, "width": 32, "channels": 1, "eval_samples": 500, "eval_every": 10},
    },
    # Seed 000/001: MLP nets on ChestMNIST, LSGAN/WGAN/WGAN-GP, 50 epochs, batch 64, Adam 2e-4 (0.5, 0.999).
    "seed-chestmnist": {
        "dataset": "chestmnist",
        "models": ["mlp"],
        "losses": ["lsgan", "wgan", "wgan-gp"],
        "seeds": 3,
        "train": {"epochs": 50, "batch_size": 64, "lr": 2e-4},
    },
    # Seed 003: conv nets with batch norm (none in the critics), grayscale RetinaMNIST, n_critic 5 for the WGANs.
    "seed-retinamnist": {
        "dataset": "retinamnist",
        "models": ["dcgan"],
        "losses": ["lsgan", "wgan", "wgan-gp"],
        "seeds": 3,
        "train": {"epochs": 50, "batch_size": 64, "lr": 2e-4, "channels": 1},
    },
    # Seed 002: BCE GAN, MLP G with batch norm, LeakyReLU D, PathMNIST converted to grayscale.
    "seed-pathmnist": {
        "dataset": "pathmnist",
        "models": ["mlp-bn"],
        "losses": ["gan"],
        "seeds": 3,
        "train": {"epochs": 50, "batch_size": 64, "lr": 2e-4, "channels": 1},
    },
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
        base = from_dict({"dataset": self.dataset, **self.train})
        return [
            (f"{m}-{l}-s{s}", base.replace(model=m, loss=l, seed=s, out=str(Path(self.out) / "runs" / f"{m}-{l}-s{s}")))
            for m in self.models
            for l in self.losses
            for s in range(self.seeds)
        ]


def summarise_run(name: str, cfg: TrainConfig, error: str | None = None) -> dict:
    """One run's record: its status, final eval metrics and wall time, read back from its directory."""
    run = RunDir(cfg.out)
    info = run.read_info()
    records = run.read_records()
    evals, epochs = [r for r in records if r.get("kind") == "eval"], [r for r in records if r.get("kind") == "epoch"]
    last = evals[-1] if evals else {}
    evaluation = {
        k: v
        for k, v in last.items()
        if k not in ("kind", "step", "epoch", "eval_time_s", "domain_test_auc", "domain_test_acc")
    }
    return {
        "name": name,
        "variant": f"{cfg.model}-{cfg.loss}",
        "model": cfg.model,
        "loss": cfg.loss,
        "seed": cfg.seed,
        "status": info.get("status", "failed" if error else "missing"),
        "error": error or info.get("error"),
        "wall_time_s": info.get("wall_time_s"),
        "eval_seconds": info.get("eval_seconds"),
        "steps": epochs[-1]["step"] if epochs else 0,
        "epochs": info.get("epochs_done", 0),
        "device": info.get("device"),
        "metrics": evaluation,
        "domain_extractor": {k: last[k] for k in ("domain_test_auc", "domain_test_acc") if k in last},
        "versions": info.get("versions", {}),
        "dir": str(run),
    }


def run_one(name: str, cfg: TrainConfig) -> dict:
    """Train one run unless it is finished; resume it if it has a checkpoint. Never raises."""
    run = RunDir(cfg.out)
    if run.read_info().get("status") == "finished":
        return summarise_run(name, cfg)
    try:
        Trainer(cfg, progress=False).fit(resume=run.last_checkpoint.exists())
    except KeyboardInterrupt:
        raise
    except Exception as e:  # a failed run is recorded, the study goes on
        return summarise_run(name, cfg, error=f"{type(e).__name__}: {e}")
    return summarise_run(name, cfg)


def _run_in_ray_worker(name: str, cfg: TrainConfig, threads: int) -> dict:
    """A Ray task with as many torch threads as the driver: the same float reduction order as a local
    run, hence the same results; Ray reserves that many CPUs per task so tasks never oversubscribe."""
    torch.set_num_threads(threads)
    return run_one(name, cfg)


def pack_size(pack: str | int) -> int | None:
    """Runs per pack for ``--pack``: off = 1 (each run alone), K, or auto = None (``medgan.packed.auto_pack_size``
    decides per group of runs that can share a pack: 1 on a CPU, by a few seconds of measurement elsewhere)."""
    if pack == "off":
        return 1
    if pack == "auto":
        return None
    try:
        k = int(pack)
    except ValueError:
        k = 0
    if k < 1:
        raise MedganError(f"--pack must be off, auto or a number of runs >= 1, got {pack!r}")
    return k


def run_packed(specs: list[tuple[str, TrainConfig]], k: int | None):
    """Yield each run's record: runs that can share a pack (``medgan.packed.pack_key``) trained ``k`` at a time as one
    (None: as many as ``auto_pack_size`` measures to pay), the others alone. A pack that fails is not retried as a
    pack: its runs go on one at a time from their checkpoints, so one run's failure (a NaN) is recorded for it alone."""
    groups: dict[str | None, list] = {}
    for name, cfg in specs:
        if RunDir(cfg.out).read_info().get("status") == "finished":
            yield summarise_run(name, cfg)
        else:
            groups.setdefault(pack_key(cfg), []).append((name, cfg))
    for key, group in groups.items():
        size = 1 if key is None else k or auto_pack_size([cfg for _, cfg in group])
        for chunk in [group[i : i + size] for i in range(0, len(group), size)]:
            started = [RunDir(cfg.out).last_checkpoint.exists() for _, cfg in chunk]
            if len(chunk) > 1 and len(set(started)) == 1:
                try:
                    Pack([cfg for _, cfg in chunk], progress=False).fit(resume=started[0])
                    yield from (summarise_run(name, cfg) for name, cfg in chunk)
                    continue
                except KeyboardInterrupt:
                    raise
                except Exception as e:
                    warnings.warn(
                        f"the pack of {', '.join(name for name, _ in chunk)} failed ({type(e).__name__}: {e}); "
                        "its runs go on one at a time",
                        MedganWarning,
                        stacklevel=2,
                    )
            yield from (run_one(name, cfg) for name, cfg in chunk)


def run_all(
    specs: list[tuple[str, TrainConfig]],
    backend: str = "local",
    ray_address: str | None = None,
    pack: str | int = "off",
):
    """Yield each run's record as it finishes: in sequence here (``pack``: several at once, see ``run_packed``), or
    as Ray tasks (1 GPU each when the cluster has GPUs) on a local Ray instance or the cluster at ``ray_address``."""
    k = pack_size(pack)
    if backend == "local":
        yield from run_packed(specs, k) if k != 1 else (run_one(name, cfg) for name, cfg in specs)
        return
    if backend != "ray":
        raise MedganError(f"backend must be local or ray, got {backend!r}")
    if k is None or k > 1:
        raise MedganError(
            "--pack is for the local backend; with --backend ray each run is a task of its own (--pack off)"
        )
    try:
        import ray
    except ImportError:
        raise MedganError("--backend ray needs Ray: pip install 'ray>=2.9'") from None
    ray.init(address=ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    threads = torch.get_num_threads()
    gpus = ray.cluster_resources().get("GPU", 0)
    task = ray.remote(num_cpus=threads, num_gpus=1 if gpus else 0)(_run_in_ray_worker)
    pending = [task.remote(name, cfg, threads) for name, cfg in specs]
    while pending:
        done, pending = ray.wait(pending)
        yield from ray.get(done)


def compare(study: Study, backend: str = "local", ray_address: str | None = None, pack: str | int = "off") -> dict:
    """Run (or skip/resume) every run of the study, then write results.json, results.csv, report.md and report.html.
    The study folder is held against a second ``compare`` meanwhile (it stops, saying what this one is doing)."""
    out, specs = Path(study.out), study.runs()
    with files.FolderLock(out, f"medgan compare of {out} ({len(specs)} runs)") as lock:
        files.write_json(out / "study.json", study.__dict__)
        records, start = [], time.time()
        with tqdm(total=len(specs), unit="run", desc="study", disable=None) as bar:
            for record in run_all(specs, backend, ray_address, pack):
                records.append(record)
                lock.update(f"medgan compare of {out} ({len(records)} of {len(specs)} runs done)")
                headline = record["metrics"].get(HEADLINE)
                detail = f"{HEADLINE} {headline:.4g}" if headline is not None else (record["error"] or "")
                wall = f"{record['wall_time_s']:7.1f} s" if record["wall_time_s"] else ""
                bar.write(f"{record['name']:<28} {record['status']:<9} {wall}  {detail}")
                bar.update(1)
        order = [name for name, _ in specs]
        records.sort(key=lambda r: order.index(r["name"]))
        summary = aggregate(records)
        results = {
            "study": study.__dict__,
            "runs": records,
            "summary": summary,
            "separated": {m: separations(summary, m) for m in _metrics(summary) if separable(m)},
            "validation": load_validation(study),
            "wall_time_s": time.time() - start,
        }
        if results["validation"]:
            passed = [m for m, ok in results["validation"]["passed"].items() if ok]
            results["ranking"] = ranking(summary, passed)
        files.write_json(out / "results.json", results)
        write_reports(results, out)
    return results


def _metrics(summary: dict) -> list[str]:
    """Every metric in a summary, in first-seen order."""
    return list(dict.fromkeys(m for s in summary.values() for m in s))


def load_validation(study: Study) -> dict | None:
    """The metric validation in ``OUT/validation/`` (written by ``medgan validate-metrics --out OUT/validation``)
    when it is for the study's dataset and image size: its path and which metrics passed."""
    path = Path(study.out) / VALIDATION
    if not path.exists():
        return None
    validation = json.loads(path.read_text())
    size = study.train.get("size") or 28
    if (validation["dataset"], validation["size"]) != (study.dataset, size):
        return {
            "path": str(VALIDATION.with_suffix(".md")),
            "passed": {},
            "mismatch": f"it is for {validation['dataset']} at {validation['size']} px, "
            f"the study {study.dataset} at {size} px",
        }
    return {
        "path": str(VALIDATION.with_suffix(".md")),
        "passed": {m: row["passed"] for m, row in validation["metrics"].items()},
        "not_validated": validation.get("not_validated", {}),
    }


def load_study_file(path: str | Path) -> dict:
    """A TOML study file: dataset, models, losses, seeds, out, preset at top level; shared settings under [train]."""
    values = read_toml(path, "study file")
    allowed = {"preset", "dataset", "models", "losses", "seeds", "out", "train"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise MedganError(
            f"{path}: unknown study key(s) {unknown}; valid: {sorted(allowed)} (training settings go under [train])"
        )
    return values


def study_from_args(preset: str | None, file: dict | None = None, **given) -> Study:
    """A study from a preset, then a study file, then command-line values (each overriding the one before)."""
    file = dict(file or {})
    preset = preset or file.get("preset")
    file.pop("preset", None)
    if preset and preset not in STUDY_PRESETS:
        raise MedganError(f"unknown preset {preset!r}; choose from {', '.join(STUDY_PRESETS)}")
    return Study(**{"train": {}, **layered(STUDY_PRESETS.get(preset), file, given)})
