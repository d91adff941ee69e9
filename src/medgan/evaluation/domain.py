"""The ``domain`` feature extractor: a small CNN trained by medgan on the real train split.

Inception-v3 features come from natural photos at 299 px; on 28 px X-rays they say little. The domain
net learns features of the dataset at hand: supervised on its labels when it has two or more classes
(multi-label for ChestMNIST) plus predicting which of 4 rotations was applied to a rotated copy
(self-supervised), or on rotations alone when there are no labels. It is trained once per
dataset/size/channels/ARCHITECTURE, cached on disk with its test AUC/ACC, and reused.

Features: the pooled activations of all three blocks, each block scaled to unit mean std on the train
split. Why (``medgan validate-metrics`` on PneumoniaMNIST 28 px, 2-core CPU; benchmarks/RESULTS.md):
with the last block's features and labels alone, FD was not monotone under Gaussian noise (0.24, 6.1,
39.0, 24.5, 74.0 at levels 0-4) and blind to 5% mixed-in IHC patches (0.9x its seed-to-seed spread);
with this net FD is sensitive to all six disturbances (mixed-in 9.5x, blur 13.9x), for ~2.5x the
training time and test AUC 0.954 instead of 0.960.
"""

from __future__ import annotations

import copy
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medgan import MedganError, files
from medgan.data import ImageSet, to_float
from medgan.data.medmnist import cache_root
from medgan.device import memory_format

MAX_INPUT = 64  # DomainNet's default (C2ST's net): larger images are downsampled to this before the net
# Resolutions of the domain extractor for images larger than 28 px, both at most MAX_INPUT (64) as before; knobs for
# benchmarks/extractor_cost.py. Measured on BreastMNIST 64 px (benchmarks/RESULTS.md#extractor_cost), both cheaper
# settings lose what the extractor is for, so neither is the default:
# INPUT_SIZE: features (and training) at most at this size, larger images downsampled inside the net. At 32 px it
#   trained in ~1/6 of the CPU time (test AUC 0.885 vs 0.901), but FD went blind to Gaussian noise (level-1
#   deviation 0.15x its spread instead of 18x) and failed validate-metrics (4 of 6 disturbances).
# TRAIN_SIZE: training steps at most at this size, then batch norm re-estimated and features taken at INPUT_SIZE.
#   At 32 px the classifier scored at 64 px fell to test AUC 0.795 (untrustworthy).
INPUT_SIZE = MAX_INPUT
TRAIN_SIZE = MAX_INPUT
BN_BATCHES = 8  # batches of the train split that re-estimate batch norm at the feature resolution

# MedMNIST v2 (Yang et al. 2023, Table 3), ResNet-18 at 28 px on the test split: (AUC, ACC).
RESNET18_28 = {
    "pathmnist": (0.983, 0.907),
    "chestmnist": (0.768, 0.947),
    "dermamnist": (0.917, 0.735),
    "octmnist": (0.943, 0.743),
    "pneumoniamnist": (0.944, 0.854),
    "retinamnist": (0.717, 0.524),
    "breastmnist": (0.901, 0.863),
    "bloodmnist": (0.998, 0.958),
    "tissuemnist": (0.930, 0.676),
    "organamnist": (0.997, 0.935),
    "organcmnist": (0.992, 0.900),
    "organsmnist": (0.972, 0.782),
}
SELF_SUPERVISED = True  # add the rotation objective to the label objective (labelled datasets)
ARCHITECTURE = "blocks3-rot1"  # in the cache key: change it whenever the net, its features or its objective change
TRUST_MARGIN = 0.10  # AUC more than this below the reference: the features are not trustworthy
DEFAULT_STEPS = (
    400  # batch-128 steps (+ as many rotated images): ~75 s on 1 CPU thread at 28 px; PneumoniaMNIST test AUC 0.954
)


def default_steps() -> int:
    """Training steps of the domain net: $MEDGAN_DOMAIN_STEPS when set (seen by worker processes too)."""
    return int(os.environ.get("MEDGAN_DOMAIN_STEPS") or DEFAULT_STEPS)


class DomainNet(nn.Module):
    """Three 3x3 conv layers (width, 2*width, 4*width) with batch norm, pooling between, a linear head
    (and a rotation head for the self-supervised objective; C2ST reuses the net and ignores it).

    Kept this small on purpose: features for 2 x 10,000 images must take seconds on a 2-core CPU.
    Images larger than ``input_size`` are downsampled to it (antialiased bilinear) before the first layer."""

    def __init__(self, channels: int, n_outputs: int, width: int = 32, input_size: int = MAX_INPUT):
        super().__init__()
        self.input_size = input_size

        def conv(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *conv(channels, width),
            nn.MaxPool2d(2),
            *conv(width, 2 * width),
            nn.MaxPool2d(2),
            *conv(2 * width, 4 * width),
        )
        self.head = nn.Linear(4 * width, n_outputs)
        self.rotation_head = nn.Linear(4 * width, 4)  # the self-supervised objective (see train_domain_net)
        # per block: 1 / (mean feature std on the train split), so every block weighs alike in distances
        self.register_buffer("block_scale", torch.ones(3))
        self.block_sizes = (width, 2 * width, 4 * width)

    def for_inference(self) -> DomainNet:
        """A copy in eval mode with batch norm folded into the convolutions: same outputs, ~2x faster on CPU."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        fused = copy.deepcopy(self).eval()
        layers: list[nn.Module] = []
        for layer in fused.body:
            if isinstance(layer, nn.BatchNorm2d) and isinstance(layers[-1], nn.Conv2d):
                layers[-1] = fuse_conv_bn_eval(layers[-1], layer)
            else:
                layers.append(layer)
        fused.body = nn.Sequential(*layers)
        return fused.to(memory_format=memory_format(next(fused.parameters()).device))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (features, logits): features are the spatial means of every block's activations,
        concatenated (width + 2*width + 4*width); the head sees the last block's.
        In the nets' layout (``device.memory_format``)."""
        x = x.contiguous(memory_format=memory_format(x.device))
        if max(x.shape[-2:]) > self.input_size:
            x = shrink(x, self.input_size)
        pooled = []
        for layer in self.body:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                pooled.append(x.mean((2, 3)))
        features = torch.cat([f * scale for f, scale in zip(pooled, self.block_scale)], 1)
        return features, self.head(pooled[-1])

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor, device="cpu") -> None:
        """Set ``block_scale`` from uint8 ``images`` (a sample of the train split)."""
        self.block_scale.fill_(1.0)
        features, _ = _predict(self, images, device=device)
        stds = features.std(0).split(list(self.block_sizes))
        self.block_scale.copy_(torch.stack([1 / s.mean().clamp(min=1e-6) for s in stds]))


def shrink(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float images (N, C, H, W) downsampled to at most ``size`` px on their longer side (antialiased bilinear)."""
    h, w = x.shape[-2:]
    scale = size / max(h, w)
    target = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=target, mode="bilinear", antialias=True, align_corners=False)


def input_size(size: int) -> int:
    """The resolution the domain extractor of ``size`` px images takes its features at."""
    return min(size, INPUT_SIZE)


def train_size(size: int) -> int:
    """The resolution the domain extractor of ``size`` px images trains at."""
    return min(size, TRAIN_SIZE, INPUT_SIZE)


@torch.no_grad()
def _restat(net: DomainNet, train: ImageSet, rng: torch.Generator, batch_size: int, device) -> None:
    """Batch-norm running statistics of ``net`` re-estimated (cumulative average) on train batches at its input size."""
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    for _ in range(BN_BATCHES):
        index = torch.randint(0, len(train), (min(batch_size, len(train)),), generator=rng)
        net(to_float(train.uint8(index).to(device)))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.eval()


@dataclass
class Task:
    kind: str  # "multi-class", "multi-label, binary-class" or "rotation"
    n_outputs: int

    @staticmethod
    def of(data: ImageSet) -> Task:
        if data.multi_label:
            return Task("multi-label, binary-class", data.labels.shape[1])
        n_classes = int(data.labels.max()) + 1 if len(data) else 0
        return Task("multi-class", n_classes) if n_classes >= 2 else Task("rotation", 4)

    def inputs_and_targets(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None):
        """Batch inputs and targets; rotation draws a random quarter-turn per image."""
        if self.kind != "rotation":
            return images, labels.float() if self.kind.startswith("multi-label") else labels[:, 0]
        turns = (
            torch.randint(0, 4, (len(images),), generator=generator)
            if generator is not None
            else torch.arange(len(images)) % 4
        )
        rotated = torch.stack([torch.rot90(x, int(k), dims=(1, 2)) for x, k in zip(images, turns)])
        return rotated, turns

    def loss(self, logits, targets):
        if self.kind.startswith("multi-label"):
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.cross_entropy(logits, targets)

    def scores(self, logits):
        return torch.sigmoid(logits) if self.kind.startswith("multi-label") else torch.softmax(logits, 1)


ROTATION = Task("rotation", 4)


def fingerprint(data: ImageSet) -> str:
    """Cheap identity of a split: name, shape and a hash of a strided sample of its images and labels."""
    step = max(1, len(data) // 2000)
    digest = hashlib.md5(f"{data.name}|{tuple(data.images.shape)}|{data.channels}".encode())
    digest.update(data.uint8(torch.arange(0, len(data), step)).numpy().tobytes())
    digest.update(data.labels.numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.inference_mode()
def _predict(
    net: DomainNet, images: torch.Tensor, batch_size: int = 512, device="cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    net.eval()
    outs = [net(to_float(chunk.to(device))) for chunk in images.split(batch_size)]
    return torch.cat([f for f, _ in outs]).cpu(), torch.cat([l for _, l in outs]).cpu()


def test_scores(net: DomainNet, task: Task, test: ImageSet, device="cpu") -> dict:
    """AUC and ACC on the real test split, with MedMNIST's own evaluator."""
    from medmnist.evaluator import getACC, getAUC

    inputs, targets = task.inputs_and_targets(test.uint8(), test.labels, None)
    _, logits = _predict(net, inputs, device=device)
    y_score = task.scores(logits).numpy()
    y_true = targets.numpy()
    kind = "multi-class" if task.kind == "rotation" else task.kind
    try:
        auc = float(getAUC(y_true, y_score, kind))
    except ValueError:  # a class absent from the test split
        auc = float("nan")
    return {"test_auc": auc, "test_acc": float(getACC(y_true, y_score, kind))}


def train_domain_net(
    train: ImageSet, test: ImageSet, steps: int | None = None, batch_size: int = 128, seed: int = 0, device="cpu"
) -> tuple[DomainNet, dict]:
    """Train the domain net on ``train``; score it on ``test``. Leaves the global RNG untouched."""
    task, steps = Task.of(train), steps or default_steps()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng = torch.Generator().manual_seed(seed)
        net = DomainNet(train.channels, task.n_outputs, input_size=train_size(train.size))
        net = net.to(device, memory_format=memory_format(torch.device(device)))
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
        net.train()
        for _ in range(steps):
            index = torch.randint(0, len(train), (min(batch_size, len(train)),), generator=rng)
            images, targets = task.inputs_and_targets(train.uint8(index), train.labels[index], rng)
            flip = torch.rand(len(images), generator=rng) < 0.5  # horizontal flips: cheap augmentation
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            if task.kind == "rotation" or not SELF_SUPERVISED:
                _, logits = net(to_float(images.to(device)))
                loss = task.loss(logits, targets.to(device))
            else:  # labels on the images, plus which quarter-turn was applied on rotated copies, in one batch
                rotated, turns = ROTATION.inputs_and_targets(images, targets, rng)
                features, logits = net(to_float(torch.cat([images, rotated]).to(device)))
                n, last = len(images), net.block_sizes[-1]  # block_scale is 1 until calibrate()
                loss = task.loss(logits[:n], targets.to(device)) + F.cross_entropy(
                    net.rotation_head(features[n:, -last:]), turns.to(device)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        if net.input_size < input_size(train.size):  # trained at a lower resolution: features at the higher one
            net.input_size = input_size(train.size)
            _restat(net, train, rng, 2 * batch_size, device)
        net.calibrate(train.uint8(torch.randperm(len(train), generator=rng)[:2000]), device)
    info = {
        "task": task.kind,
        "n_outputs": task.n_outputs,
        "steps": steps,
        "train_images": len(train),
        "architecture": ARCHITECTURE,
        "input_size": net.input_size,
        "train_size": train_size(train.size),
        **test_scores(net, task, test, device),
    }
    reference = RESNET18_28.get(train.name)
    if reference and task.kind != "rotation":
        info["reference_resnet18_28"] = {"auc": reference[0], "acc": reference[1]}
        info["trustworthy"] = bool(info["test_auc"] >= reference[0] - TRUST_MARGIN)
    else:
        info["trustworthy"] = bool(info["test_acc"] >= 0.5 if task.kind == "rotation" else info["test_auc"] >= 0.75)
    return net.eval(), info


def extractor_path(train: ImageSet, steps: int | None = None) -> Path:
    """Where the domain net of this train split is cached (the name holds everything it depends on)."""
    name = train.name.replace("folder:", "folder-").replace("/", "_")[-60:]
    seen, trained = input_size(train.size), train_size(train.size)
    size = f"{train.size}px" + (f"-in{seen}" if seen < min(train.size, MAX_INPUT) else "")
    size += f"-t{trained}" if trained < seen else ""  # at the default resolutions: the name it always had
    return (
        cache_root()
        / "extractors"
        / f"domain-{ARCHITECTURE}-{name}-{size}-{train.channels}ch-{steps or default_steps()}-{fingerprint(train)}.pt"
    )


def load_or_train(
    train: ImageSet, test: ImageSet, steps: int | None = None, device="cpu", verbose: bool = True
) -> tuple[DomainNet, dict]:
    """The cached domain net for this train split, training (and caching) it on first use."""
    steps = steps or default_steps()
    path = extractor_path(train, steps)
    task = Task.of(train)
    if path.exists():
        try:
            state = files.load_torch(path)
            net = DomainNet(train.channels, task.n_outputs, input_size=state["info"].get("input_size", MAX_INPUT))
            net.load_state_dict(state["net"])
            return net.to(device).eval(), state["info"]
        except (MedganError, KeyError, RuntimeError) as e:  # a cache: a damaged entry is trained again
            print(f"medgan: the cached domain extractor {path} is unreadable ({e}); training it again", file=sys.stderr)
    if verbose:
        print(
            f"medgan: training the domain feature extractor for {train.name} ({steps} steps, cached at {path})",
            file=sys.stderr,
        )
    net, info = train_domain_net(train, test, steps=steps, device=device)
    files.save_torch(path, {"net": net.state_dict(), "info": info})
    return net, info


class DomainExtractor:
    """Features (and logits) of the domain net for uint8 image batches."""

    name = "domain"

    def __init__(self, train: ImageSet, test: ImageSet, steps: int | None = None, device="cpu"):
        self.device = device
        net, self.info = load_or_train(train, test, steps=steps, device=device)
        self.net = net.for_inference()
        self.has_class_logits = self.info["task"] == "multi-class"

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features, logits = _predict(self.net, images, device=self.device)
        return features, logits if self.has_class_logits else None
