"""The GAN training step, written once for an ordinary run and for a pack of K runs.

The step sees K runs' nets with the members first: real and generated batches are (K, B, C, H, W) and D's scores
(K, B, ...). An ordinary run is K = 1 (``Solo``); a pack (``medgan.packed.PackedNets``) calls K nets as one
vmapped net. What differs between the two sits behind ``Nets``: how G and D are called, how a random draw is made
per member (in the member's own random stream) and where the optimisers' moments live. The rest (the D loss with
its penalties, the optimiser steps, weight clipping, ADA's update, the G step, the weight average and the record)
is ``gan_step``.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial

import torch
from torch import nn

from medgan.augment import AdaptiveAugment
from medgan.config import TrainConfig
from medgan.ema import EMA
from medgan.losses import GANLoss, d_losses, one_member


def make_optimizer(params, cfg: TrainConfig, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (all tensors in one pass; chosen by measurement: benchmarks/RESULTS.md)."""
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=True)


class Nets:
    """K runs' nets as the step sees them, members first. Subclasses set the attributes and define the calls."""

    generator: nn.Module  # what the weight average follows (a pack's stacked generator)
    discriminator: nn.Module  # what the G step keeps from storing gradients
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: EMA | None
    losses: list[GANLoss]  # each member's loss (they agree on the penalties)
    adas: list[AdaptiveAugment | None]  # each member's augmentation controller
    own_discriminators: list[nn.Module]  # each member's D, which its loss clips after a D step
    latent_dim: int

    def g(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def d(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D's scores of members-first images, each seen through its member's augmentation."""
        raise NotImplementedError

    def each(self, draw, *tensors: torch.Tensor) -> torch.Tensor:
        """``draw(*slices)`` for every member's slices of ``tensors``, in the member's random stream, stacked."""
        raise NotImplementedError

    def active(self, k: int):
        """A context in which the global random generators are member ``k``'s."""
        return nullcontext()

    def update_average(self) -> None:
        self.ema.update(self.generator)

    def optimizer_states(self, k: int) -> tuple[dict, dict]:
        """Member ``k``'s (G, D) optimiser state, as an unpacked run's optimisers would save it."""
        raise NotImplementedError

    def load_optimizer_states(self, k: int, g_state: dict, d_state: dict) -> None:
        raise NotImplementedError


class Solo(Nets):
    """One run's nets and optimisers as a pack of one: a leading dimension of 1, taken off before each call (by
    ``squeeze``, whose gradient is a view: indexing's would be a new tensor in torch's default layout, a layout
    change in a channels_last net's backward pass)."""

    def __init__(self, cfg: TrainConfig, generator, discriminator, augmented_d, loss, ada, ema):
        self.generator, self.discriminator, self.augmented_d = generator, discriminator, augmented_d
        self.opt_g = make_optimizer(generator.parameters(), cfg, cfg.lr)
        self.opt_d = make_optimizer(discriminator.parameters(), cfg, cfg.lr_d or cfg.lr)
        self.ema, self.losses, self.adas, self.own_discriminators = ema, [loss], [ada], [discriminator]
        self.latent_dim = cfg.latent_dim

    def g(self, z, labels=None):
        return self.generator(z.squeeze(0), *(() if labels is None else (labels,))).unsqueeze(0)

    def d(self, x, labels=None):
        return self.augmented_d(x.squeeze(0), **({} if labels is None else {"y": labels})).unsqueeze(0)

    each = staticmethod(one_member)

    def optimizer_states(self, k):
        return self.opt_g.state_dict(), self.opt_d.state_dict()

    def load_optimizer_states(self, k, g_state, d_state):
        self.opt_g.load_state_dict(g_state)
        self.opt_d.load_state_dict(d_state)


def gan_step(
    nets: Nets, real: torch.Tensor, generator_step: bool, labels: torch.Tensor | None = None, autocast=nullcontext
) -> list[dict]:
    """One D step of every member, plus one G step if asked; ``real``: (K, B, C, H, W). Returns each member's
    record of detached scalars (no device sync). Conditional runs (K = 1) pass the real batch's ``labels``; the fakes
    are drawn for the same labels. ``autocast``: the forward passes' precision context."""
    z = nets.each(lambda: torch.randn(real.shape[1], nets.latent_dim, device=real.device))
    with torch.set_grad_enabled(generator_step), autocast():  # keep G's graph only when G will step
        fake = nets.g(z, labels)
    D = partial(nets.d, labels=labels)
    with autocast():
        results = d_losses(nets.losses, D, real, fake.detach(), nets.each)
    nets.opt_d.zero_grad(set_to_none=True)
    _total(loss for loss, _ in results).backward()
    nets.opt_d.step()
    records = []
    for loss, ada, disc, (d_loss, stats) in zip(nets.losses, nets.adas, nets.own_discriminators, results):
        loss.after_d_step(disc)
        record = {"d_loss": d_loss.detach(), **stats}
        if ada:
            record["augment_p"] = ada.p.clone()  # the p this step used
            ada.update(stats["d_real_sign"])
        records.append(record)
    if generator_step:
        nets.discriminator.requires_grad_(False)  # gradients flow through D to G, but none are stored for D
        with autocast():
            out = D(fake)
            g_losses = [loss.g_loss(out[k]) for k, loss in enumerate(nets.losses)]
        nets.opt_g.zero_grad(set_to_none=True)
        _total(g_losses).backward()
        nets.opt_g.step()
        nets.discriminator.requires_grad_(True)
        if nets.ema:
            nets.update_average()
        for record, g_loss in zip(records, g_losses):
            record["g_loss"] = g_loss.detach()
    return records


def _total(losses) -> torch.Tensor:
    """The members' losses added up: each member's gradient is its own (for one member, its loss itself)."""
    losses = list(losses)
    return sum(losses[1:], losses[0])
