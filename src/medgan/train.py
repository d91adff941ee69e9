"""The trainer: one loop for every GAN variant, seeded, checkpointed by the clock and at the end, resumable.

Per batch: one discriminator step; every ``n_critic``-th batch also one generator step. The data
stay on the device as uint8 and are normalised per batch, so there is no per-image work in the loop.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from torchvision.utils import make_grid

from medgan import MedganError, files
from medgan.augment import AdaptiveAugment, AugmentedDiscriminator
from medgan.clocks import Interval, TimeShare
from medgan.config import TrainConfig, to_toml
from medgan.data import ImageSet, load_split
from medgan.device import autocast, memory_format, resolve_device, resolve_precision
from medgan.ema import EMA
from medgan.evaluation.during_training import EvaluateDuringTraining
from medgan.losses import build_loss
from medgan.models.conditional import grid_labels, label_space, label_vectors
from medgan.nets import nets_for
from medgan.progression import Progression
from medgan.rundir import RunDir, default_run_dir
from medgan.runlog import RunLog
from medgan.step import Nets, Solo, gan_step


class NonFiniteLoss(MedganError):
    pass


class Trainer:
    """One run: builds its data, nets and loss from a config and keeps its books (position in the data, log,
    clocks, checkpoints, grids, evaluations); ``fit()`` trains it. The step is ``medgan.step.gan_step`` over
    ``self.nets`` (this run alone, or a pack it belongs to); the loop is ``fit_runs``."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: ImageSet | None = None,
        progress: bool = True,
        tensorboard: bool = True,
        eval_data: ImageSet | None = None,
    ):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.out = Path(cfg.out or default_run_dir(cfg))
        self.run = RunDir(self.out)
        self.data = data or load_split(cfg)
        if len(self.data) < cfg.batch_size:
            raise MedganError(f"batch size {cfg.batch_size} is larger than the dataset ({len(self.data)} images)")
        precision = resolve_precision(cfg.precision, self.device)
        self.loss = build_loss(cfg.loss, r1=cfg.r1)
        # Resolve the "auto" values so config.toml describes the run completely.
        self.cfg = cfg = cfg.replace(
            channels=self.data.channels,
            size=self.data.size,
            out=str(self.out),
            precision=precision,
            n_critic=cfg.n_critic or self.loss.n_critic,
            **self._label_settings(cfg),
        )
        torch.manual_seed(cfg.seed)
        self.generator, self.discriminator = (
            m.to(self.device, memory_format=memory_format(self.device)) for m in nets_for(cfg)
        )
        # What the losses call D: the discriminator behind DiffAugment when that is on (applied as often as ADA says).
        self.ada = AdaptiveAugment(cfg.augment_target, cfg.batch_size, self.device) if cfg.augment_target else None
        self.augmented_d = (
            AugmentedDiscriminator(self.discriminator, cfg.augment, self.ada.p if self.ada else 1.0)
            if cfg.augment
            else self.discriminator
        )
        self.ema = EMA(self.generator, cfg.ema) if cfg.ema else None
        # What steps the nets: this run alone (with its optimisers), or the pack it is a member of (set by the pack).
        self.nets: Nets | None = self.stepping_nets()
        self.member = 0  # this run's place among the members of self.nets
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        columns = int(math.sqrt(cfg.grid_size)) or 1
        # Conditional runs: a grid row per class.
        self.fixed_labels = (
            grid_labels(cfg.n_classes, cfg.multi_label, columns).to(self.device) if cfg.conditional else None
        )
        n_grid = len(self.fixed_labels) if cfg.conditional else cfg.grid_size
        self.grid_columns = columns if cfg.conditional else int(math.sqrt(n_grid)) or 1
        self.fixed_noise = torch.randn(
            n_grid, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 1)
        ).to(self.device)
        self.epoch, self.batch_index, self.step = 0, 0, 0
        self.epoch_shuffle_state = self.shuffle.get_state()
        self.progress, self.tensorboard = progress, tensorboard
        self.step_hooks: list = []  # callables(trainer) run after every step (tests, extensions)
        self.epoch_hooks: list = []  # callables(trainer, log) run after every epoch (extensions, benchmarks)
        self.stop_requested = False
        self.deadline, self.last_epoch = math.inf, False  # set by fit from max_minutes; by the loop at each epoch end
        self.clock = time.time  # what the schedules read (tests set a fake one)
        self.checkpointed_step: int | None = None  # the step of the newest last.pt
        # Set by open(): the run's clocks; by begin_epoch(): the epoch's data order and step records.
        self.t_start = self.earlier_seconds = self.t_interval = 0.0
        self.checkpoints = self.grids = self.eval_time = None
        self.n_batches, self.order, self.epoch_records, self.pending = 0, None, [], []
        self.summary: dict = {}  # the newest record written to metrics.jsonl (the progress bar shows it)
        # Progressive training swaps self.data per stage and sets the fade-in before each step.
        self.progression = Progression(cfg, self.data, given=data is not None) if cfg.model == "progressive" else None
        self.evaluation = (
            EvaluateDuringTraining(cfg, self.run, self.data, self.device, self.sampling, self.save_best, eval_data)
            if cfg.eval_every
            else None
        )
        self.real_images = self.data  # full size, on the CPU: for samples/real.png
        self.data = self.data.resident(self.device)  # on a GPU: the uint8 images live there, batches are gathered there

    def stepping_nets(self) -> Nets | None:
        """This run's nets and optimisers as the step sees them (a pack member: None, the pack builds them)."""
        return Solo(self.cfg, self.generator, self.discriminator, self.augmented_d, self.loss, self.ada, self.ema)

    @property
    def opt_g(self) -> torch.optim.Optimizer:
        return self.nets.opt_g

    @property
    def opt_d(self) -> torch.optim.Optimizer:
        return self.nets.opt_d

    def _label_settings(self, cfg: TrainConfig) -> dict:
        if not cfg.conditional:
            return {"n_classes": 0, "multi_label": False}
        n_classes = label_space(self.data.labels, self.data.multi_label)
        if n_classes < 2:
            raise MedganError(f"--conditional needs labels of at least 2 classes; {self.data.name} has {n_classes}")
        return {"n_classes": n_classes, "multi_label": self.data.multi_label}

    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The generator that samples and evaluations use: the weight average when EMA is on."""
        return self.ema.module if self.ema else self.generator

    @contextmanager
    def sampling(self):
        """The sampling generator in eval mode for the block; its train/eval mode is restored after."""
        generator = self.sampling_generator
        training = generator.training
        try:
            yield generator.eval()
        finally:
            generator.train(training)

    # ----- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        ema = {"generator_ema": self.ema.module.state_dict(), "ema_updates": self.ema.updates} if self.ema else {}
        ada = {"augment_p": self.ada.p.item()} if self.ada else {}
        return (
            ema
            | ada
            | {
                "generator": self.generator.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                **dict(zip(("opt_g", "opt_d"), self.nets.optimizer_states(self.member))),
                "epoch": self.epoch,
                "batch_index": self.batch_index,
                "step": self.step,
                "epoch_shuffle_state": self.epoch_shuffle_state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "config": self.cfg.to_dict(),
            }
        )

    def save(self) -> None:
        files.save_torch(self.run.last_checkpoint, self.state())

    def save_best(self) -> None:
        """The current state as the run's best checkpoint (keep_best)."""
        files.save_torch(self.run.best_checkpoint, self.state())

    def load(self, path: Path) -> None:
        try:
            state = files.load_torch(path)
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.nets.load_optimizer_states(self.member, state["opt_g"], state["opt_d"])
            if self.ema:
                self.ema.module.load_state_dict(state["generator_ema"])
                self.ema.updates = state["ema_updates"]
            if self.ada:
                self.ada.p.fill_(state["augment_p"])
        except (RuntimeError, KeyError, EOFError, OSError) as e:
            raise MedganError(
                f"checkpoint {path} cannot be loaded ({type(e).__name__}: {e}); start a new run with another --out"
            ) from None
        self.epoch, self.batch_index, self.step = state["epoch"], state["batch_index"], state["step"]
        self.checkpointed_step = self.step
        self.epoch_shuffle_state = state["epoch_shuffle_state"]
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def autocast(self):
        """Forward passes in bfloat16 when precision is bf16 (backward and optimiser steps stay outside)."""
        return autocast(self.device, self.cfg.precision)

    # ----- one step ----------------------------------------------------------------------------
    def train_step(self, real: torch.Tensor, generator_step: bool, labels: torch.Tensor | None = None) -> dict:
        """One D step, plus one G step if asked, of this run alone (``gan_step``); returns detached scalars (no device
        sync). Conditional runs pass the real batch's ``labels``; the fakes are drawn for the same labels."""
        return gan_step(self.nets, real.unsqueeze(0), generator_step, labels, self.autocast)[0]

    # ----- the loop ----------------------------------------------------------------------------
    def batches_per_epoch(self) -> int:
        return len(self.data) // self.cfg.batch_size

    def fit(self, resume: bool = False) -> Path:
        """Train (or, with ``resume``, continue from last.pt) to the end; the run folder is held against a second
        command for the while (``files.FolderLock``)."""
        fit_runs([self], self.nets, resume, self.progress)
        return self.out

    def open(self, resume: bool) -> RunLog:
        """Load last.pt (``resume``) or check the folder is free, write config.toml, start the run's log and clocks."""
        cfg = self.cfg
        ckpt = self.run.last_checkpoint
        if resume:
            if not ckpt.exists():
                raise MedganError(f"nothing to resume: {ckpt} does not exist")
            self.load(ckpt)
        elif ckpt.exists():
            raise MedganError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        files.write_text(self.run.config, to_toml(cfg))
        log = RunLog(self.run, tensorboard=self.tensorboard)
        if not self.run.real_grid.exists():
            log.real_grid(self.real_grid())
        if resume:
            log.truncate_after(self.step)
        earlier = log.training_seconds()
        log.started(str(self.device), resume)
        self.t_start = t_start = self.clock()
        self.earlier_seconds = earlier
        self.deadline = t_start + 60 * cfg.max_minutes - earlier if cfg.max_minutes else math.inf
        self.checkpoints, self.grids = Interval(cfg.checkpoint_every_s, t_start), Interval(cfg.grid_every_s, t_start)
        self.eval_time = TimeShare(cfg.eval_share, log.eval_seconds())
        self.pending, self.t_interval = [], time.perf_counter()
        return log

    def close(self, log: RunLog, error: BaseException | None = None) -> None:
        """Record how the run ended (finished, interrupted or failed with ``error``) and its times in run.json."""
        if error is not None:  # a MedganError (NonFiniteLoss included) says what to do in its message
            log.status(
                status="failed",
                error=str(error) if isinstance(error, MedganError) else f"{type(error).__name__}: {error}",
            )
        log.info["segments"][-1].update(
            wall_time_s=self.clock() - self.t_start, eval_s=self.eval_time.spent - log.eval_seconds()
        )
        wall, evaluating = log.training_seconds(), log.eval_seconds()
        log.status(wall_time_s=wall, eval_seconds=evaluating, eval_share=evaluating / wall if wall else 0.0)
        log.close()
        if error is not None:
            return
        if self.stop_requested:
            log.status(status="interrupted", epochs_done=self.epoch)
        else:
            log.status(
                status="finished",
                epochs_done=self.epoch,
                finished=self.clock(),
                stopped_by="epochs" if self.epoch == self.cfg.epochs else "max_minutes",
            )

    def request_stop(self) -> None:
        """Stop cleanly after the current step (SIGINT/SIGTERM): checkpoint, then exit (resumable)."""
        self.stop_requested = True

    def begin_epoch(self) -> None:
        """This epoch's data order (the run's own shuffle generator, restored from the epoch's start on resume)."""
        images = self.progression.images_for(self.epoch) if self.progression else None
        if images is not None:  # a new stage of a progressive run
            self.data = images.resident(self.device)
        self.n_batches = n = self.batches_per_epoch()
        self.shuffle.set_state(self.epoch_shuffle_state)
        self.order = (
            torch.randperm(len(self.data), generator=self.shuffle)[: n * self.cfg.batch_size]
            .view(n, -1)
            .to(self.data.images.device)
        )
        self.epoch_records: list[dict] = []

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next real batch on the device, and its label vectors for conditional runs."""
        if self.progression:
            nets = [self.generator, self.discriminator, *([self.ema.module] if self.ema else [])]
            self.progression.fade(self.epoch, self.batch_index, self.batches_per_epoch(), nets, self.data)
        cfg, data, index = self.cfg, self.data, self.order[self.batch_index]
        # labels of the current data (a progressive stage's file has its own)
        labels = (
            label_vectors(data.labels[index], cfg.n_classes, cfg.multi_label).to(self.device)
            if cfg.conditional
            else None
        )
        return data.batch(index, self.device), labels

    def generator_step_due(self) -> bool:
        return (self.step + 1) % self.cfg.n_critic == 0

    def after_step(self, record: dict, log: RunLog) -> bool:
        """Count the step, write metrics every ``log_every`` steps, checkpoint mid-epoch when due; False when a stop
        request ends the run mid-epoch."""
        cfg = self.cfg
        self.step += 1
        self.batch_index += 1
        self.pending.append(record)
        for hook in self.step_hooks:
            hook(self)
        if len(self.pending) == cfg.log_every or self.batch_index == self.n_batches or self.stop_requested:
            t_now = time.perf_counter()
            self.summary = self._flush(self.pending, log, (t_now - self.t_interval) / len(self.pending))
            self.epoch_records.append(self.summary | {"n": len(self.pending)})
            self.pending, self.t_interval = [], t_now
            if self.batch_index < self.n_batches and (
                self.stop_requested or (cfg.checkpoint_every_s and self.checkpoints.due(self.clock()))
            ):
                self._checkpoint(log)  # mid-epoch (an epoch's end checkpoints in _epoch_side_effects)
        # On an epoch's last step a stop request finishes the epoch first.
        return not (self.stop_requested and self.batch_index < self.n_batches)

    def end_epoch(self, log: RunLog, last: bool | None = None) -> bool:
        """Close the epoch: grid, evaluation, checkpoint, each when due; False when the run ends here.
        ``last``: whether this is the run's last epoch (default: all epochs done, or past ``max_minutes``)."""
        self.epoch += 1
        self.batch_index = 0
        self.epoch_shuffle_state = self.shuffle.get_state()
        # The run's last epoch: all of them, or past max_minutes (epoch hooks read it, e.g. the final evaluation).
        self.last_epoch = self.epoch_is_last(self.epoch) if last is None else last
        self._epoch_side_effects(log, self.epoch_records)
        if self.stop_requested or self.last_epoch:  # a signal on the epoch's last step, an epoch hook, or the end
            return False
        self.t_interval = time.perf_counter()
        return True

    def epoch_is_last(self, epochs_done: int) -> bool:
        """Whether the run ends after ``epochs_done`` epochs: all of them done, or past ``max_minutes``."""
        return epochs_done == self.cfg.epochs or self.clock() > self.deadline

    def _flush(self, pending: list[dict], log: RunLog, step_time: float) -> dict:
        """Average the pending step records, stop on NaN/inf, write one metrics record."""
        keys = sorted({k for r in pending for k in r})
        means = {k: torch.stack([r[k] for r in pending if k in r]).float().mean().item() for k in keys}
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLoss(
                f"non-finite {', '.join(bad)} at step {self.step} (epoch {self.epoch + 1}); training stopped. "
                + (
                    f"The last good checkpoint ({self.run.last_checkpoint}, step {self.checkpointed_step}) is kept. "
                    if self.checkpointed_step is not None
                    else f"No checkpoint was written yet (the first after {self.cfg.checkpoint_every_s:g} s). "
                )
                + "Try a lower --lr, another --loss (e.g. wgan-gp or lsgan), or a different --seed."
            )
        record = {"step": self.step, "epoch": self.epoch + 1, **means, "step_time_s": step_time}
        log.scalars(record)
        return record

    def _epoch_side_effects(self, log: RunLog, records: list[dict]) -> None:
        total = sum(r["n"] for r in records)
        keys = sorted({k for r in records for k in r} - {"n", "step", "epoch"})
        summary = {
            k: sum(r[k] * r["n"] for r in records if k in r) / sum(r["n"] for r in records if k in r) for k in keys
        }
        summary["epoch_time_s"] = summary.pop("step_time_s") * total
        log.scalars({"kind": "epoch", "step": self.step, "epoch": self.epoch, **summary})
        if self.last_epoch or self.stop_requested or self.grids.due(self.clock()):
            log.sample_grid(self.sample_grid(), self.epoch, self.step)
            self.grids.fired(self.clock())
        if self._evaluation_due():
            started = self.clock()
            setup = (
                self.evaluation(self.epoch, self.step, self.last_epoch, log) or 0.0
            )  # one-off work in it (the extractor)
            took = self.clock() - started
            self.eval_time.add(took, typical=max(0.0, took - setup))
        for hook in self.epoch_hooks:
            hook(self, log)
        if self.last_epoch or self.stop_requested or self.checkpoints.due(self.clock()):
            self._checkpoint(log)

    def _evaluation_due(self) -> bool:
        """At the run's last epoch; else every ``eval_every`` epochs when evaluations stay within ``eval_share`` of
        the wall time. Progressive runs evaluate only at full size."""
        if self.evaluation is None or (self.progression and not self.progression.in_last_stage(self.epoch)):
            return False
        elapsed = self.earlier_seconds + self.clock() - self.t_start
        return self.last_epoch or (self.epoch % self.cfg.eval_every == 0 and self.eval_time.due(elapsed))

    def _checkpoint(self, log: RunLog) -> None:
        self.save()
        self.checkpointed_step = self.step
        self.checkpoints.fired(self.clock())
        log.status(epochs_done=self.epoch)

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """Images from the fixed noise batch as one grid in [0, 1]."""
        condition = () if self.fixed_labels is None else (self.fixed_labels,)
        with self.sampling() as generator:
            images = generator(self.fixed_noise, *condition)
        return make_grid(images.float().cpu(), nrow=self.grid_columns, normalize=True, value_range=(-1, 1))

    def real_grid(self) -> torch.Tensor:
        """Training images in the sample grid's layout: seeded random ones, or per row its class's where it has some."""
        data, n = self.real_images, len(self.fixed_noise)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.cfg.seed + 2))
        index = order[:n]
        if self.fixed_labels is not None:
            vectors = label_vectors(data.labels[order], self.cfg.n_classes, self.cfg.multi_label)
            rows = self.fixed_labels.cpu().view(-1, self.grid_columns, self.cfg.n_classes)[:, 0]
            picks = [order[(vectors == row).all(1)][: self.grid_columns] for row in rows]
            index = torch.cat([p if len(p) == self.grid_columns else order[: self.grid_columns] for p in picks])
        return make_grid(data.uint8(index).float() / 255, nrow=self.grid_columns)


def fit_runs(runs: list[Trainer], nets: Nets, resume: bool = False, progress: bool = True) -> None:
    """The loop, for one run or a pack: hold each run's folder, open each (loading last.pt with ``resume``), step all
    of them through ``nets`` until their end, and record in each run how it ended."""
    logs, error = [], None
    with ExitStack() as held:
        for run in runs:
            what = f"medgan train of {run.out}"
            if len(runs) > 1:
                what = f"medgan packed training of {run.out} (one of {len(runs)} runs)"
            held.enter_context(files.FolderLock(run.out, what))
        try:
            for k, run in enumerate(runs):
                with nets.active(k):  # a resume loads the run's random state into its stream
                    logs.append(run.open(resume))
            if len({(run.epoch, run.batch_index, run.step) for run in runs}) > 1:
                raise MedganError(
                    "the pack's runs stopped at different steps; resume each alone "
                    "(medgan train --resume --out RUN) or all with --pack off"
                )
            with stop_on_signals(lambda: [run.request_stop() for run in runs]):
                _loop(runs, nets, logs, progress)
        except BaseException as e:
            error = e
            raise
        finally:
            for run, log in zip(runs, logs):
                run.close(log, error)


def _loop(runs: list[Trainer], nets: Nets, logs: list[RunLog], progress: bool) -> None:
    lead, cfg = runs[0], runs[0].cfg
    bar = _progress_bar(lead, len(runs), progress)
    try:
        while lead.epoch < cfg.epochs:
            for run in runs:
                run.begin_epoch()
            while lead.batch_index < lead.n_batches:
                batches = [run.next_batch() for run in runs]
                real = batches[0][0].unsqueeze(0) if len(runs) == 1 else torch.stack([real for real, _ in batches])
                records = gan_step(nets, real, lead.generator_step_due(), batches[0][1], lead.autocast)
                going = []
                for k, (run, record) in enumerate(zip(runs, records)):
                    with nets.active(k):
                        going.append(run.after_step(record, logs[k]))
                _show(bar, lead)
                if not all(going):
                    return
            last = lead.epoch_is_last(lead.epoch + 1)  # one decision for all: they share the clock
            ended = []
            for k, run in enumerate(runs):
                with nets.active(k):
                    ended.append(not run.end_epoch(logs[k], last))
            if any(ended):
                return
    finally:
        bar.close()


def _progress_bar(lead: Trainer, n_runs: int, progress: bool):
    from tqdm.auto import tqdm  # a widget in Jupyter, text elsewhere

    cfg, per_epoch = lead.cfg, lead.batches_per_epoch()
    # A time budget ends the run before its epochs: no percentage then, the budget in the description.
    total, budget = (None, f" ({cfg.max_minutes:g} min budget)") if cfg.max_minutes else (cfg.epochs * per_epoch, "")
    what = f"{cfg.model}-{cfg.loss}" if n_runs == 1 else f"{n_runs} packed {cfg.model} runs"
    done = lead.epoch * per_epoch + lead.batch_index
    return tqdm(total=total, initial=done, disable=not progress, unit="step", desc=what + budget, dynamic_ncols=True)


def _show(bar, lead: Trainer) -> None:
    """One step more on the bar; the lead run's newest logged record beside it."""
    bar.update(1)
    summary = lead.summary
    if summary and not lead.pending:  # just written
        bar.set_postfix(
            img_s=f"{lead.cfg.batch_size / summary['step_time_s']:.0f}",
            d=f"{summary['d_loss']:.3f}",
            g=f"{summary.get('g_loss', float('nan')):.3f}",
            eval=f"{lead.eval_time.spent:.0f}s",
            refresh=False,
        )


@contextmanager
def stop_on_signals(request_stop):
    """SIGINT/SIGTERM call ``request_stop`` (finish the current step, checkpoint, exit cleanly: resumable); a second
    signal stops at once. Only in the main thread (signal handlers cannot be set elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    requested = False

    def handle(signum, frame):
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True
        request_stop()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
