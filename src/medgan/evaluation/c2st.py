"""C2ST, the classifier two-sample test: how often can a small CNN tell generated images from real ones?

A measurement with a known precision (issue 33: one 200-step classifier on one half/half split moved
by 0.14 between seeds, 4x its binomial interval):

- **balanced, every real image used**: all ``real`` images offered (up to as many as there are generated
  ones) against as many generated images, drawn afresh for each repeat;
- **cross-fitted**: the balanced sample is cut into ``folds`` stratified folds; each fold is predicted by
  a classifier (the domain net's architecture, narrower) trained on the other folds, so every image is
  predicted exactly once per repeat by a classifier that never saw it;
- **trained until held-out loss stops improving**: each classifier holds back ``validation`` of its
  training folds, checks its loss there every epoch (batch-norm statistics re-estimated first) and stops
  after ``patience`` checks without improvement (keeping the best weights), or at the step cap (``steps``,
  else ``$MEDGAN_C2ST_STEPS``, else ``DEFAULT_MAX_STEPS``);
- **repeated**: ``repeats`` re-splits (new folds, new generated subsample, new initialisations).

``accuracy`` is the mean over all predictions; ``std`` is the classifier's own standard deviation of that
figure (between repeats / sqrt(repeats); with one repeat, the fold-to-fold spread beyond its binomial
part, / sqrt(folds)); the 95% interval widens the Wilson interval of the ``n_test`` balanced images by
t(df) * std (half-widths added in quadrature; df = repeats - 1, or folds - 1 with one repeat).
0.5 = indistinguishable, 1.0 = trivially fake. Settings chosen by ``benchmarks/c2st_noise.py``
(benchmarks/RESULTS.md, "c2st_noise").
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from medgan.data import to_float
from medgan.evaluation.domain import MAX_INPUT, DomainNet

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (a normal's beyond 30)."""
    table = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
    if df <= len(table):
        return table[max(df, 1) - 1]
    return Z95 + (Z95**3 + Z95) / (4 * df)


def combined_interval(accuracy: float, n: int, std: float, multiplier: float = Z95) -> tuple[float, float]:
    """The Wilson interval of ``accuracy`` on ``n`` items, its half-widths widened in quadrature by
    ``multiplier * std`` (the classifier's own standard deviation; a t quantile when ``std`` is estimated
    from a few repeats), clipped to [0, 1]."""
    low, high = wilson_interval(round(accuracy * n), n)
    if n == 0:
        return (low, high)
    down = math.hypot(accuracy - low, multiplier * std)
    up = math.hypot(high - accuracy, multiplier * std)
    return (max(0.0, accuracy - down), min(1.0, accuracy + up))


# 1,080 real PneumoniaMNIST images vs noisy/blurred others, 28 px, one CPU thread (benchmarks/RESULTS.md):
# k=2 x 4 repeats: max - min over 3 seeds 0.002 (noise, 0.76) and 0.016 (blur, 0.63, before MIN_STEPS)
# where the old 200-step half/half C2ST gave 0.109 and 0.097; ~55 CPU s per evaluation.
DEFAULT_FOLDS = 2
DEFAULT_REPEATS = 4
DEFAULT_MAX_STEPS = 500  # per classifier; early stopping ended after 60-104 on 1,080 real 28 px images
PATIENCE = 3  # validation checks (one per epoch, see CHECK_EVERY) without a lower held-out loss
# an improvement: the held-out loss down by 1% or by 0.005 if more (on easy sets it creeps towards 0 for
# hundreds of steps)
MIN_IMPROVEMENT, MIN_DELTA = 0.01, 0.005
MIN_STEPS = 100  # before early stopping may end training: on graded noise it stopped after 24 steps at 0.58-0.60
CHECK_EVERY = 8  # steps, at least, between checks (small sets have epochs of one step)
VALIDATION = 0.2  # fraction of the training folds held back for early stopping


def _prepare(images: torch.Tensor, device) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float [-1, 1] on ``device``, downsampled once to the net's input size."""
    out = []
    for chunk in images.split(1024):
        x = to_float(chunk.to(device))
        if x.shape[-1] > MAX_INPUT:
            x = F.interpolate(x, size=(MAX_INPUT, MAX_INPUT), mode="bilinear", antialias=True, align_corners=False)
        out.append(x)
    return torch.cat(out)


@torch.no_grad()
def _recalibrate(net: DomainNet, x: torch.Tensor, limit: int = 512) -> None:
    """Batch-norm statistics re-estimated from (up to ``limit`` of) the training images with the current
    weights ("precise BN"): the running averages lag the weights, and with them the held-out accuracy of
    one epoch's classifier jumped between 0.55 and 0.92 (noisy PneumoniaMNIST images, Adam 2e-3)."""
    layers = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the chunks below
    net.train()
    for chunk in x[:limit].split(256):
        net(chunk)
    for m in layers:
        m.momentum = 0.1


@torch.inference_mode()
def _logits(net: DomainNet, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(chunk)[1][:, 0] for chunk in x.split(1024)])


def _fit(
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    max_steps: int,
    batch_size: int,
    width: int,
    patience: int,
    rng: torch.Generator,
) -> tuple[DomainNet, int]:
    """A classifier trained on (x, y) until its loss on (x_val, y_val), checked every epoch (at least every
    ``CHECK_EVERY`` steps), stopped improving for ``patience`` checks (or ``max_steps``); the weights with the
    lowest held-out loss, and the steps taken."""
    net = DomainNet(x.shape[1], 1, width).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    batch = min(batch_size, len(x))
    per_epoch = max(1, len(x) // batch)
    check_every = max(per_epoch, CHECK_EVERY)
    best, best_state, since, step = math.inf, None, 0, 0
    order, cursor = torch.empty(0, dtype=torch.long), per_epoch
    min_steps = min(MIN_STEPS, max_steps)
    while step < max_steps and (since < patience or step < min_steps):
        net.train()
        for _ in range(min(check_every, max_steps - step)):
            if cursor == per_epoch:  # a new epoch: a new order
                order, cursor = torch.randperm(len(x), generator=rng).to(x.device), 0
            index = order[cursor * batch : (cursor + 1) * batch]
            cursor += 1
            _, logits = net(x[index])
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if len(x_val) == 0:
            continue
        _recalibrate(net, x)
        net.eval()
        val = float(F.binary_cross_entropy_with_logits(_logits(net, x_val), y_val))
        if val < best - max(MIN_DELTA, MIN_IMPROVEMENT * best):
            best, since = val, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            since += 1
    if best_state is not None:
        net.load_state_dict(best_state)
    else:
        _recalibrate(net, x)
    return net.for_inference(), step


def c2st(
    real: torch.Tensor,
    fake: torch.Tensor,
    steps: int | None = None,
    batch_size: int = 128,
    width: int = 16,
    seed: int = 0,
    device="cpu",
    folds: int = DEFAULT_FOLDS,
    repeats: int | None = None,
    patience: int = PATIENCE,
    validation: float = VALIDATION,
) -> dict:
    """Cross-fitted accuracy of CNNs told to separate uint8 ``real`` from uint8 ``fake`` (N, C, H, W).

    ``steps`` caps each classifier's training steps (default ``$MEDGAN_C2ST_STEPS`` or ``DEFAULT_MAX_STEPS``),
    ``repeats`` defaults to ``$MEDGAN_C2ST_REPEATS`` or ``DEFAULT_REPEATS`` (the cost is folds * repeats classifiers);
    ``patience=0`` turns early stopping off (each classifier then trains exactly ``steps`` steps on all its
    training folds). Returns ``accuracy``, ``std``, ``ci95_low``, ``ci95_high`` (Wilson interval of ``n_test``
    images widened by ``std``), ``binomial_ci95`` (the Wilson interval alone), ``n_test`` (balanced images
    predicted per repeat), ``n_real`` (real images used), ``folds``, ``repeats``, ``steps`` (mean steps per
    classifier), ``max_steps`` and ``repeat_accuracies``."""
    max_steps = steps or int(os.environ.get("MEDGAN_C2ST_STEPS") or DEFAULT_MAX_STEPS)
    repeats = repeats or int(os.environ.get("MEDGAN_C2ST_REPEATS") or DEFAULT_REPEATS)
    n = min(len(real), len(fake))
    if n < folds or folds < 2 or repeats < 1:
        raise ValueError(f"c2st needs folds >= 2, repeats >= 1 and >= folds images per side; got {n}, {folds}")
    labels = torch.cat([torch.ones(n), torch.zeros(n)]).to(device)
    repeat_accuracies, fold_accuracies, steps_taken = [], [], []
    correct_total = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng = torch.Generator().manual_seed(seed)
        for _ in range(repeats):
            chosen_real = real[torch.randperm(len(real), generator=rng)[:n]]
            chosen_fake = fake[torch.randperm(len(fake), generator=rng)[:n]]
            images = _prepare(torch.cat([chosen_real, chosen_fake]), device)
            # stratified folds: each fold holds n/folds real and n/folds generated images
            fold_of = torch.cat([torch.randperm(n, generator=rng) % folds, torch.randperm(n, generator=rng) % folds])
            correct = torch.zeros(2 * n, dtype=torch.bool)
            for f in range(folds):
                test = (fold_of == f).nonzero()[:, 0]
                rest = (fold_of != f).nonzero()[:, 0]
                rest = rest[torch.randperm(len(rest), generator=rng)]
                n_val = int(round(validation * len(rest))) if patience > 0 else 0
                val, train = rest[:n_val], rest[n_val:]
                net, taken = _fit(
                    images[train.to(device)],
                    labels[train.to(device)],
                    images[val.to(device)],
                    labels[val.to(device)],
                    max_steps,
                    batch_size,
                    width,
                    patience if n_val else math.inf,
                    rng,
                )
                hits = ((_logits(net, images[test.to(device)]) > 0) == labels[test.to(device)].bool()).cpu()
                correct[test] = hits
                fold_accuracies.append(float(hits.float().mean()))
                steps_taken.append(taken)
            repeat_accuracies.append(float(correct.float().mean()))
            correct_total += int(correct.sum())
    n_test = 2 * n
    accuracy = correct_total / (n_test * repeats)
    if repeats > 1:
        std = float(torch.tensor(repeat_accuracies, dtype=torch.float64).std()) / math.sqrt(repeats)
        df = repeats - 1
    else:  # fold-to-fold spread beyond what the binomial explains, of a mean over `folds` classifiers
        per_fold = n_test / folds
        excess = float(torch.tensor(fold_accuracies, dtype=torch.float64).var()) - accuracy * (1 - accuracy) / per_fold
        std = math.sqrt(max(0.0, excess) / folds)
        df = folds - 1
    low, high = combined_interval(accuracy, n_test, std, t975(df))
    return {
        "accuracy": accuracy,
        "std": std,
        "ci95_low": low,
        "ci95_high": high,
        "binomial_ci95": list(wilson_interval(round(accuracy * n_test), n_test)),
        "n_test": n_test,
        "n_real": n,
        "folds": folds,
        "repeats": repeats,
        "steps": sum(steps_taken) / len(steps_taken),
        "max_steps": max_steps,
        "repeat_accuracies": repeat_accuracies,
    }
