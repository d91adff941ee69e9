"""Packed runs: K runs of one recipe that differ only in seed (and loss) trained at once, in one set of kernels.

Each member is an ordinary ``Trainer`` with its own run folder (config.toml, metrics.jsonl, checkpoints, samples,
run.json), so ``resume``, ``sample``, ``evaluate`` and reports see ordinary runs, and a member can be resumed alone.
What the pack changes is what the step (``medgan.step.gan_step``, the same as an unpacked run's) steps: ``PackedNets``.
The members' parameters, buffers, weight averages and Adam moments live
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
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from medgan import MedganError
from medgan.config import TrainConfig
from medgan.data import ImageSet, load_split
from medgan.device import resolve_device, resolve_precision
from medgan.ema import EMA
from medgan.losses import LOSSES, build_loss
from medgan.step import Nets, gan_step, make_optimizer
from medgan.train import Trainer, fit_runs

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
    if resolve_precision(cfg.precision, resolve_device(cfg.device)) == "bf16":
        return "bf16 precision (batch norm in a vmapped net under autocast fails on mixed dtypes)"
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
    The stacks are in torch's default layout, also where the runs use channels_last (the CPU:
    ``device.memory_format``), so there a member equals its unpacked run up to rounding. The copy is never called
    directly (``Vmapped`` runs it)."""
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
    """A run of a pack: an ordinary run whose nets and weight average are views of the pack's stacked tensors, stepped
    by the pack's ``PackedNets``. Its checkpoints hold its own slice only, in the format of an unpacked run."""

    def stepping_nets(self) -> None:
        return None  # the pack's PackedNets steps it; no optimisers of its own

    def state(self) -> dict:
        return _own_copies(super().state())

    def train_step(self, *args, **kwargs):
        raise MedganError("a pack member is stepped by its pack (medgan.step.gan_step over Pack.nets)")


def _own_copies(value):
    """``value`` with every tensor cloned: a view of a stacked tensor would otherwise save the whole stack."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _own_copies(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_own_copies(v) for v in value)
    return value


class PackedNets(Nets):
    """The members' nets stacked (``stacked_module``), called as one vmapped net, with one fused Adam per net over
    the stacked tensors (K independent Adams: Adam is elementwise). Random draws are made per member, in its stream."""

    def __init__(self, members: list[PackMember], streams: list[RandomStream]):
        lead = members[0]
        self.members, self.streams = members, streams
        self.generator = stacked_module([m.generator for m in members])
        self.discriminator = stacked_module([m.discriminator for m in members])
        self.run_g, self.run_d = Vmapped(self.generator), Vmapped(self.discriminator)
        self.opt_g = make_optimizer(self.generator.parameters(), lead.cfg, lead.cfg.lr)
        self.opt_d = make_optimizer(self.discriminator.parameters(), lead.cfg, lead.cfg.lr_d or lead.cfg.lr)
        averages = stacked_module([m.ema.module for m in members]) if lead.ema else None
        self.ema = EMA(self.generator, lead.cfg.ema, average=averages) if lead.ema else None
        self.losses = [m.loss for m in members]
        self.adas = [m.ada for m in members]
        self.own_discriminators = [m.discriminator for m in members]  # clipping acts on the views
        self.augments = [m.augmented_d.augment for m in members] if lead.cfg.augment else None
        self.latent_dim = lead.cfg.latent_dim

    def g(self, z, labels=None):
        return self.run_g(z)

    def d(self, x, labels=None):
        if self.augments:  # each member's own augmentation (and ADA p), drawn in its stream
            x = self.each(self.augments, x)
        return self.run_d(x)

    def each(self, draw, *tensors):
        """``draw`` (one callable, or one per member) on each member's slices, in the member's random stream."""
        draws = draw if isinstance(draw, list) else [draw] * len(self.members)
        results = []
        for k, stream in enumerate(self.streams):
            with stream.active():
                results.append(draws[k](*(t[k] for t in tensors)))
        return torch.stack(results)

    def active(self, k):
        return self.streams[k].active()

    def update_average(self):
        self.ema.updates = self.members[0].ema.updates  # a resume loaded the count into the members
        self.ema.update(self.generator)
        for m in self.members:
            m.ema.updates = self.ema.updates

    def optimizer_states(self, k):
        return tuple(_member_state(opt.state_dict(), k) for opt in (self.opt_g, self.opt_d))

    def load_optimizer_states(self, k, g_state, d_state):
        for opt, state in ((self.opt_g, g_state), (self.opt_d, d_state)):
            _load_member_state(opt, k, len(self.members), state)


def _member_state(stacked: dict, k: int) -> dict:
    """Member ``k``'s slice of a stacked optimiser's ``state_dict`` (its moments; the shared step count as it is)."""
    state = {
        i: {key: value[k].clone() if value.dim() else value.clone() for key, value in moments.items()}
        for i, moments in stacked["state"].items()
    }
    return {"state": state, "param_groups": stacked["param_groups"]}


def _load_member_state(opt: torch.optim.Optimizer, k: int, n_members: int, own: dict) -> None:
    """Write an unpacked run's optimiser ``state_dict`` into member ``k``'s slice of the stacked optimiser."""
    params = opt.param_groups[0]["params"]
    for i, moments in own["state"].items():
        param, stacked = params[int(i)], opt.state[params[int(i)]]
        for key, value in moments.items():
            value = value.to(param.device)
            if not value.dim():  # the step count: the same for every member
                stacked[key] = value.clone()
                continue
            if key not in stacked:
                stacked[key] = value.new_zeros((n_members, *value.shape))
            stacked[key][k] = value


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
            first = cfgs[0].to_dict()
            differ = sorted(
                {k for c in cfgs for k, v in c.to_dict().items() if k not in FREE_SETTINGS and v != first[k]}
            )
            raise MedganError(
                "these runs cannot train as one pack: they differ in "
                f"{', '.join(differ) or 'n_critic or gradient penalty of their losses'} "
                f"(a pack shares every setting but {', '.join(FREE_SETTINGS)})"
            )
        data = data or load_split(cfgs[0])
        self.members: list[PackMember] = []
        streams: list[RandomStream] = []
        for cfg in cfgs:
            member = PackMember(cfg, data, progress=False, tensorboard=tensorboard)  # seeds the global generators
            self.members.append(member)
            streams.append(RandomStream(member.device))  # the state the member's own run starts its loop with
        if len({m.out for m in self.members}) < len(self.members):
            raise MedganError("two runs of the pack have the same output folder")
        self.nets = PackedNets(self.members, streams)
        for k, member in enumerate(self.members):
            member.nets, member.member = self.nets, k
        self.device, self.progress = self.members[0].device, progress

    def fit(self, resume: bool = False) -> list[Path]:
        """Train every member to its end (or continue each from its last.pt); each run folder is held meanwhile."""
        fit_runs(self.members, self.nets, resume, self.progress)
        return [m.out for m in self.members]


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
    stacked = torch.stack(reals)
    return sequential, _timed(lambda: gan_step(pack.nets, stacked, generator_step=True), steps, device)


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
    data = load_split(first)
    with tempfile.TemporaryDirectory() as scratch:
        trial = [c.replace(out=f"{scratch}/{i}", eval_every=0) for i, c in enumerate(cfgs[:k])]
        sequential, packed = step_seconds(trial, data)
    return k if packed < sequential else 1
