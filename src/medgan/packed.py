"""Packed runs: K runs of one recipe that differ only in seed (and loss) trained at once, in one set of kernels.

Each member is an ordinary ``Trainer`` with its own run folder (config.toml, metrics.jsonl, checkpoints, samples,
run.json), so ``resume``, ``sample``, ``evaluate`` and reports see ordinary runs, and a member can be resumed alone.
What the pack changes is the step: the members' parameters, buffers, weight averages and Adam moments live
stacked along a new first dimension (each member's own tensors are views of its slice); G and D run for every
member at once as one vmapped ``functional_call`` (torch.func); the members' losses, each a mean over its own
batch, are summed, so each member's gradient is its own; one fused Adam steps the stacked tensors, which is K
independent Adams because Adam is elementwise. Batch-norm statistics, spectral norm's power iteration and the
minibatch standard deviation are per member under ``vmap``.

Every random draw (noise, augmentation, the gradient penalty's mixing weights) is made in the member's own random
stream, in the order its own run makes it, so member k is the run with its seed: the same initial weights, data
order and noise, and the same steps up to float rounding (a vmapped convolution adds in another order).
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from medgan import MedganError, files
from medgan.config import TrainConfig
from medgan.data import ImageSet, load_dataset
from medgan.device import resolve_device
from medgan.ema import EMA
from medgan.losses import LOSSES, build_loss, input_gradient, interpolate
from medgan.runlog import RunLog
from medgan.train import Trainer, make_optimizer, stop_on_signals

FREE_SETTINGS = ("seed", "loss", "out")  # what may differ between the members of a pack


def pack_key(cfg: TrainConfig) -> str | None:
    """Runs with the same key can train as one pack: equal settings but for seed, loss and folder, and losses
    that agree on D steps per G step and on the gradient penalty. None: this run cannot be packed."""
    if unsupported(cfg):
        return None
    loss = build_loss(cfg.loss, r1=cfg.r1)
    shared = {k: v for k, v in cfg.to_dict().items() if k not in FREE_SETTINGS}
    return json.dumps([shared, cfg.n_critic or loss.n_critic, bool(loss.gp_weight)], sort_keys=True)


def unsupported(cfg: TrainConfig) -> str | None:
    """What about ``cfg`` packing does not support, or None."""
    if cfg.model == "progressive":
        return "progressive runs (their nets grow between stages)"
    if cfg.conditional:
        return "conditional runs"
    if cfg.loss not in LOSSES:
        return f"the unknown loss {cfg.loss!r}"
    return None


class RandomStream:
    """One member's random stream: the global generators' states (CPU, and the CUDA device's) its own run would have."""

    def __init__(self, device: torch.device):
        self.device = device
        self.save()

    def save(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)

    @contextmanager
    def active(self):
        """The global generators draw from this stream inside the block."""
        outside = RandomStream(self.device)
        self.restore()
        try:
            yield
        finally:
            self.save()
            outside.restore()


def stacked_module(modules: list[nn.Module]) -> nn.Module:
    """A copy of ``modules[0]`` whose parameters and buffers hold all the modules' ones stacked on a new first
    dimension; each module's own tensors become views of its slice, so it always shows the pack's current values.
    The stacks are in torch's default layout, also where the runs use channels_last (the CPU: ``device.memory_format``),
    so there a member equals its unpacked run up to rounding. The copy is never called directly (``Vmapped`` runs it)."""
    packed = copy.deepcopy(modules[0])
    for name, tensor in [*packed.named_parameters(), *packed.named_buffers()]:
        owner, _, leaf = name.rpartition(".")
        if isinstance(tensor, nn.Parameter):
            own = [m.get_parameter(name) for m in modules]
            stacked = nn.Parameter(torch.stack([t.detach() for t in own]), requires_grad=tensor.requires_grad)
            packed.get_submodule(owner)._parameters[leaf] = stacked
            for k, t in enumerate(own):
                t.data = stacked.data[k]  # the module's own Parameter object stays (its optimiser state is keyed by it)
        else:
            stacked = torch.stack([m.get_buffer(name) for m in modules])
            packed.get_submodule(owner)._buffers[leaf] = stacked
            for k, m in enumerate(modules):
                m.get_submodule(owner)._buffers[leaf] = stacked[k]
    return packed


class Vmapped:
    """Calls a stacked module (``stacked_module``) as K modules at once: inputs and outputs have the members first."""

    def __init__(self, packed: nn.Module):
        self.params, self.buffers = dict(packed.named_parameters()), dict(packed.named_buffers())
        base = copy.deepcopy(packed).to("meta")  # the structure only; the tensors come from params and buffers
        # randomness="error": the nets draw nothing at random (each member's draws are made in its own stream).
        self.call = torch.vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), randomness="error")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.call(self.params, self.buffers, x)


class PackMember(Trainer):
    """A run of a pack: an ordinary trainer whose nets, weight average and optimiser moments are views of the
    pack's stacked tensors. Its checkpoints hold its own slice only, in the format of an unpacked run."""

    pack: Pack

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """What D sees of ``x``: through the run's augmentation (drawing from the global generators) when it has one."""
        return self.augmented_d.augment(x) if self.cfg.augment else x

    def state(self) -> dict:
        self.pack.unstack_optimizers(self)
        return _own_copies(super().state())

    def train_step(self, *args, **kwargs):
        raise MedganError("a pack member is stepped by its pack (Pack.train_step)")


def _own_copies(value):
    """``value`` with every tensor cloned: a view of a stacked tensor would otherwise save the whole stack."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _own_copies(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_own_copies(v) for v in value)
    return value


class Pack:
    """K runs trained as one: ``Pack(configs).fit()`` trains (or with ``resume`` continues) every member to its end."""

    def __init__(
        self, cfgs: list[TrainConfig], data: ImageSet | None = None, progress: bool = True, tensorboard: bool = True
    ):
        problems = [f"{c.out or c.seed}: {unsupported(c)}" for c in cfgs if unsupported(c)]
        if problems:
            raise MedganError(
                f"packed training does not support {'; '.join(problems)}; train these runs one at a time (--pack off)"
            )
        if len({pack_key(c) for c in cfgs}) > 1:
            differ = sorted(
                {
                    k
                    for c in cfgs
                    for k, v in c.to_dict().items()
                    if k not in FREE_SETTINGS and v != cfgs[0].to_dict()[k]
                }
            )
            raise MedganError(
                f"these runs cannot train as one pack: they differ in {', '.join(differ) or 'n_critic or gradient penalty of their losses'} "
                f"(a pack shares every setting but {', '.join(FREE_SETTINGS)})"
            )
        first = cfgs[0]
        data = data or load_dataset(first.dataset, "train", first.size, first.channels or None, first.data_root or None)
        self.members: list[PackMember] = []
        self.streams: list[RandomStream] = []
        for cfg in cfgs:
            member = PackMember(cfg, data, progress=False, tensorboard=tensorboard)  # seeds the global generators
            member.pack = self
            self.members.append(member)
            self.streams.append(RandomStream(member.device))  # the state the member's own run starts its loop with
        if len({m.out for m in self.members}) < len(self.members):
            raise MedganError("two runs of the pack have the same output folder")
        self.device, self.progress = self.members[0].device, progress

    # ----- stacking ----------------------------------------------------------------------------
    def stack(self) -> None:
        """Stack the members' nets, averages and optimiser moments (after a resume has loaded each one's checkpoint)."""
        ms, lead = self.members, self.members[0]
        self.g, self.d = stacked_module([m.generator for m in ms]), stacked_module([m.discriminator for m in ms])
        self.run_g, self.run_d = Vmapped(self.g), Vmapped(self.d)
        self.opt_g = make_optimizer(self.g.parameters(), lead.cfg, lead.cfg.lr)
        self.opt_d = make_optimizer(self.d.parameters(), lead.cfg, lead.cfg.lr_d or lead.cfg.lr)
        self.ema = None
        if lead.ema:
            self.ema = EMA(self.g, lead.cfg.ema)
            self.ema.module, self.ema.updates = stacked_module([m.ema.module for m in ms]), lead.ema.updates
        for packed, member_opts in ((self.opt_g, [m.opt_g for m in ms]), (self.opt_d, [m.opt_d for m in ms])):
            for i, param in enumerate(packed.param_groups[0]["params"]):
                states = [opt.state.get(opt.param_groups[0]["params"][i]) for opt in member_opts]
                if states[0]:
                    packed.state[param] = {
                        key: torch.stack([s[key] for s in states]) if value.dim() else value.clone()
                        for key, value in states[0].items()
                    }

    def unstack_optimizers(self, member: PackMember) -> None:
        """Write the member's slice of the stacked Adam moments into its own optimisers (for its checkpoint)."""
        k = self.members.index(member)
        for packed, own in ((self.opt_g, member.opt_g), (self.opt_d, member.opt_d)):
            for param, own_param in zip(packed.param_groups[0]["params"], own.param_groups[0]["params"]):
                if param in packed.state:
                    own.state[own_param] = {
                        key: value[k].clone() if value.dim() else value.clone()
                        for key, value in packed.state[param].items()
                    }

    # ----- one step ----------------------------------------------------------------------------
    def each(self, draw) -> list:
        """``draw(member, k)`` for every member, in its own random stream."""
        results = []
        for k, (member, stream) in enumerate(zip(self.members, self.streams)):
            with stream.active():
                results.append(draw(member, k))
        return results

    def train_step(self, reals: list[torch.Tensor], generator_step: bool) -> list[dict]:
        """One D step (and a G step if asked) of every member; ``reals``: each member's real batch. Returns each
        member's record of detached scalars, as ``Trainer.train_step`` does."""
        ms, lead = self.members, self.members[0]
        loss0, autocast = lead.loss, lead.autocast
        z = torch.stack(self.each(lambda m, k: torch.randn(m.cfg.batch_size, m.cfg.latent_dim, device=self.device)))
        with torch.set_grad_enabled(generator_step), autocast():
            fake = self.run_g(z)
        real = torch.stack(reals)
        if loss0.r1:
            real = real.detach().requires_grad_(True)
        fake_d = fake.detach()

        def d_inputs(m, k):  # in the order the member's own run draws them: augment real, fake, then mix
            mixed = interpolate(real[k], fake_d[k]) if loss0.gp_weight else None
            return m.augment(real[k]), m.augment(fake_d[k]), mixed, m.augment(mixed) if mixed is not None else None

        if lead.cfg.augment or loss0.gp_weight:  # random draws per member, in its own stream
            real_in, fake_in, mixed, mixed_in = zip(*self.each(d_inputs))
            real_in, fake_in = torch.stack(real_in), torch.stack(fake_in)
        else:  # nothing to draw: the stacked batches as they are
            real_in, fake_in, mixed = real, fake_d, None
        with autocast():
            real_out, fake_out = self.run_d(real_in), self.run_d(fake_in)
            real_grad = input_gradient(real_out, real) if loss0.r1 else None
            mixed_grad = (
                torch.autograd.grad(self.run_d(torch.stack(mixed_in)).sum(), mixed, create_graph=True)
                if loss0.gp_weight
                else None
            )
            results = [
                m.loss.d_loss_from(
                    real_out[k],
                    fake_out[k],
                    real_grad[k] if real_grad is not None else None,
                    mixed_grad[k] if mixed_grad is not None else None,
                )
                for k, m in enumerate(ms)
            ]
        self.opt_d.zero_grad(set_to_none=True)
        sum(loss for loss, _ in results).backward()
        self.opt_d.step()
        records = []
        for m, (d_loss, stats) in zip(ms, results):
            m.loss.after_d_step(m.discriminator)  # clipping acts on the member's views of the stacked weights
            record = {"d_loss": d_loss.detach(), **stats}
            if m.ada:
                record["augment_p"] = m.ada.p.clone()
                m.ada.update(stats["d_real_sign"])
            records.append(record)
        if generator_step:
            self.d.requires_grad_(False)
            fake_in = torch.stack(self.each(lambda m, k: m.augment(fake[k]))) if lead.cfg.augment else fake
            with autocast():
                out = self.run_d(fake_in)
                g_losses = [m.loss.g_loss(out[k]) for k, m in enumerate(ms)]
            self.opt_g.zero_grad(set_to_none=True)
            sum(g_losses).backward()
            self.opt_g.step()
            self.d.requires_grad_(True)
            if self.ema:
                self.ema.update(self.g)
                for m in ms:
                    m.ema.updates = self.ema.updates
            for record, g_loss in zip(records, g_losses):
                record["g_loss"] = g_loss.detach()
        return records

    # ----- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> list[Path]:
        """Train every member to its end (or continue each from its last.pt); each run folder is held meanwhile."""
        ms, logs, error = self.members, [], None
        with ExitStack() as held:
            for m in ms:
                held.enter_context(
                    files.FolderLock(m.out, f"medgan packed training of {m.out} (one of {len(ms)} runs)")
                )
            try:
                for m, stream in zip(ms, self.streams):
                    with stream.active():  # a resume loads the member's random state into its stream
                        logs.append(m.open(resume))
                if len({(m.epoch, m.batch_index, m.step) for m in ms}) > 1:
                    raise MedganError(
                        "the pack's runs stopped at different steps; resume each alone "
                        "(medgan train --resume --out RUN) or all with --pack off"
                    )
                self.stack()
                with stop_on_signals(self.request_stop):
                    self._loop(logs)
            except BaseException as e:
                error = e
                raise
            finally:
                for m, log in zip(ms, logs):
                    m.close(log, error)
        return [m.out for m in ms]

    def request_stop(self) -> None:
        for m in self.members:
            m.request_stop()

    def _loop(self, logs: list[RunLog]) -> None:
        ms, lead = self.members, self.members[0]
        cfg = lead.cfg
        budget = f" ({cfg.max_minutes:g} min budget)" if cfg.max_minutes else ""
        per_epoch = lead.batches_per_epoch()
        bar = tqdm(
            total=None if cfg.max_minutes else cfg.epochs * per_epoch,
            initial=lead.epoch * per_epoch + lead.batch_index,
            disable=not self.progress,
            unit="step",
            desc=f"{len(ms)} packed {cfg.model} runs{budget}",
            dynamic_ncols=True,
        )
        for m in ms:
            m.start_loop()
        try:
            while lead.epoch < cfg.epochs:
                for m in ms:
                    m.begin_epoch()
                while lead.batch_index < lead.n_batches:
                    records = self.train_step([m.next_batch()[0] for m in ms], lead.generator_step_due())
                    going = self.each(lambda m, k: m.after_step(records[k], logs[k]))
                    bar.update(1)
                    if not all(going):
                        return
                last = lead.epoch_is_last(lead.epoch + 1)  # one decision for all: they share the clock
                if not all(self.each(lambda m, k: m.end_epoch(logs[k], last))):
                    return
        finally:
            bar.close()


def step_seconds(cfgs: list[TrainConfig], data: ImageSet, steps: int = 5) -> tuple[float, float]:
    """(one after another, as one pack) seconds for one training step of every run in ``cfgs``, measured on their
    device after a warm-up step, on one real batch per run. Nothing is written (the runs' folders are never opened)."""
    trainers = [Trainer(cfg, data=data, progress=False, tensorboard=False) for cfg in cfgs]
    device, index = trainers[0].device, torch.arange(cfgs[0].batch_size)
    reals = [t.data.batch(index.to(t.data.images.device), device) for t in trainers]
    sequential = _timed(
        lambda: [t.train_step(real, generator_step=True) for t, real in zip(trainers, reals)], steps, device
    )
    pack = Pack(cfgs, data=data, progress=False, tensorboard=False)
    pack.stack()
    return sequential, _timed(lambda: pack.train_step(reals, generator_step=True), steps, device)


def _timed(step, steps: int, device: torch.device) -> float:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def auto_pack_size(cfgs: list[TrainConfig], most: int = 16) -> int:
    """``--pack auto`` for runs that share a pack key: how many to pack, by measurement on their device. On a CPU, 1
    without measuring (a pack of dcgan runs stepped at 0.5-0.85x of the same runs in sequence on the 2-core CPU,
    benchmarks/RESULTS.md "packed_throughput"); elsewhere a pack of min(len(cfgs), ``most``) runs is timed against the
    same runs one after another (a few seconds), and used only if it is faster."""
    k = min(len(cfgs), most)
    if k < 2 or unsupported(cfgs[0]) or resolve_device(cfgs[0].device).type == "cpu":
        return 1
    first = cfgs[0]
    data = load_dataset(first.dataset, "train", first.size, first.channels or None, first.data_root or None)
    with tempfile.TemporaryDirectory() as scratch:
        trial = [c.replace(out=f"{scratch}/{i}", eval_every=0) for i, c in enumerate(cfgs[:k])]
        sequential, packed = step_seconds(trial, data)
    return k if packed < sequential else 1
