"""Evaluation during training: an epoch hook that scores the sampling generator with the domain extractor.

It gets what it needs from the trainer (the config, the run directory, the training images, the device,
a context giving the sampling generator, a callback that saves the best state) and knows nothing else of
training. The trainer calls it when an evaluation is due (``eval_every``, ``eval_share``, the last epoch); it
logs ``{"kind": "eval", ...}`` to metrics.jsonl and TensorBoard, so metric-vs-epoch curves exist.

With ``keep_best`` the periodic evaluations are against the validation split instead (``"kind":
"select"``): each that improves the chosen metric saves ``checkpoints/best.pt``, and the last epoch
evaluates that best checkpoint against the test split (``"kind": "eval"``), so choosing a checkpoint
never sees the test split.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from medgan import data, files
from medgan.config import TrainConfig
from medgan.data import ImageSet
from medgan.data.medmnist import cache_root
from medgan.evaluation.domain import DomainExtractor, extractor_path, fingerprint
from medgan.evaluation.evaluate import evaluate, save_closest_pairs
from medgan.metrics.catalogue import badness
from medgan.rundir import RunDir, load_run
from medgan.sample import generate_for_config

# Real-vs-real floors by extractor (its train split and steps), reference split and number of images: the same for
# every run of the data and every evaluation of a run (seeded), so they are computed once, kept per process and on
# disk beside the domain extractor (at 64 px on one core they take about a minute).
_FLOORS: dict[str, dict] = {}
FLOORS_VERSION = "2"  # in the floors' cache key: change it whenever a metric or its floor is computed differently
# 2: FRD's floor (where frd-score is installed) is kept with the others


class EvaluateDuringTraining:
    def __init__(
        self,
        cfg: TrainConfig,
        run: RunDir,
        train: ImageSet,
        device: torch.device,
        sampling: Callable[[], AbstractContextManager[torch.nn.Module]],
        save_best: Callable[[], None],
        reference: ImageSet | None = None,
        domain_steps: int | None = None,
    ):
        self.cfg, self.run, self.train, self.device = cfg, run, train, device
        self.sampling, self.save_best = sampling, save_best
        self.reference, self.domain_steps = reference, domain_steps
        self.prepared = False

    def __call__(self, epoch: int, step: int, last: bool, log) -> float:
        """Evaluate at the end of ``epoch`` (1-based count of finished epochs); ``last``: the run's last epoch.
        Returns the seconds of one-off preparation in it (training the domain extractor, cached for later runs),
        so the trainer can tell what a regular evaluation costs. Training's random state is left as it was
        (evaluations run by the clock: a resumed run may evaluate at other epochs and must train the same)."""
        devices = [self.device] if torch.device(self.device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self._call(epoch, step, last, log)

    def _call(self, epoch: int, step: int, last: bool, log) -> float:
        cfg = self.cfg
        if self.reference is None:
            self.reference = self._split("val" if cfg.keep_best else "test")
        setup = self._prepare()
        position = {"step": step, "epoch": epoch}
        with self.sampling() as generator:
            metrics = self._evaluate(
                generator,
                self.reference,
                {"kind": "select" if cfg.keep_best else "eval", **position},
                log,
                tstr=last and not cfg.keep_best,
            )
        if cfg.keep_best:
            self._keep_if_best(metrics[cfg.keep_best], position, log)
            if last:
                best, _ = load_run(self.run.path, str(self.device), "best")
                self._evaluate(
                    best,
                    self._split("test"),
                    {"kind": "eval", **position, "checkpoint": "best", "best_epoch": log.info["best"]["epoch"]},
                    log,
                    tstr=True,
                )
        return setup

    def _prepare(self) -> float:
        """Train (or load from the cache) the domain extractor before the first evaluation; its seconds."""
        if self.prepared:
            return 0.0
        started = time.perf_counter()
        DomainExtractor(self.train, self.reference, steps=self.domain_steps, device=self.device)
        self.prepared = True
        return time.perf_counter() - started

    def _split(self, split: str) -> ImageSet:
        return data.load_split(self.cfg, split)

    def _evaluate(self, generator, reference: ImageSet, record: dict, log, tstr: bool) -> dict:
        cfg = self.cfg
        n = min(cfg.eval_samples, 10 * len(self.train))
        # Conditional runs: labels as in the train split; TSTR (two classifier trainings) only when asked (the last
        # epoch).
        images, labels = generate_for_config(generator, cfg, n, cfg.seed, "as-train", self.train)
        result = evaluate(
            images,
            self.train,
            reference,
            ("domain",),
            self.device,
            domain_steps=self.domain_steps,
            n_pixel=200,
            labels=labels if tstr else None,
            floors=self._floors(reference, n),
        )
        for name, m in result["metrics"].items():
            record[name], record[f"{name}_floor"] = m["value"], m["floor"]
        record["eval_time_s"] = result["seconds"]
        info = result["extractors"]["domain"]
        record["domain_test_auc"], record["domain_test_acc"] = info["test_auc"], info["test_acc"]
        log.scalars(record)
        save_closest_pairs(images, self.train, result["memorisation"], self.run.nearest_train)
        return result["metrics"]

    def _floors(self, reference: ImageSet, n: int) -> Callable[[Callable[[], dict]], dict]:
        """``evaluate``'s memo for the real-vs-real floors against ``reference`` with ``n`` images: kept per process
        and in the cache, computed (with the function it is given) only where neither has them. A run changes
        nothing they depend on, so all runs share them."""
        extractor = extractor_path(self.train, self.domain_steps).name
        key = f"{FLOORS_VERSION}|{extractor}|{fingerprint(reference)}|{reference.split}|{n}"
        path = cache_root() / "floors" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"

        def memo(compute: Callable[[], dict]) -> dict:
            if key not in _FLOORS:
                floors = _read_floors(path)
                if floors is None:
                    floors = compute()
                    files.write_json(path, floors)
                _FLOORS[key] = floors
            return _FLOORS[key]

        return memo

    def _keep_if_best(self, metric: dict, position: dict, log) -> None:
        """Save the training state as the best checkpoint when ``metric`` beats the best so far (run.json "best")."""
        name = self.cfg.keep_best
        score = badness(name, metric["value"], metric["floor"])
        best = log.info.get("best")
        if best is None or best["metric"] != name or score < best["badness"]:
            self.save_best()
            log.status(
                best={
                    "metric": name,
                    "value": metric["value"],
                    "floor": metric["floor"],
                    "badness": score,
                    **position,
                    "split": "val",
                }
            )


def _read_floors(path: Path) -> dict | None:
    """The floors kept at ``path``; None if there are none (a cache: a damaged entry is computed again)."""
    try:
        floors = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return floors if isinstance(floors, dict) and floors else None
