"""The ``medgan`` command line: ``train``, ``sample``, ``data list``, ``data info``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from medgan import MedganError, MedganWarning

# CLI flag -> TrainConfig key; each flag's default is None so we know which ones the user gave.
TRAIN_FLAGS = {
    "--dataset": (str, "builtin, folder:PATH or a MedMNIST name (see `medgan data list`)"),
    "--data-root": (str, "folder holding the MedMNIST .npz files (default $MEDGAN_DATA, else ~/.medmnist)"),
    "--size": (int, "image size: 28, 64, 128 or 224 for MedMNIST"),
    "--channels": (int, "1 or 3 (default: the dataset's own)"),
    "--model": (str, "mlp or dcgan"),
    "--loss": (str, "gan, lsgan, wgan, wgan-gp or hinge"),
    "--epochs": (int, "number of epochs (default 50)"),
    "--batch-size": (int, "batch size (default 64)"),
    "--lr": (float, "Adam learning rate (default 2e-4)"),
    "--beta1": (float, "Adam beta1 (default 0.5)"),
    "--beta2": (float, "Adam beta2 (default 0.999)"),
    "--n-critic": (int, "D steps per G step (default 5 for wgan/wgan-gp, else 1)"),
    "--latent-dim": (int, "size of the noise vector (default 100)"),
    "--width": (int, "base channel width of the dcgan nets (default 64)"),
    "--seed": (int, "random seed (default 0)"),
    "--device": (str, "auto, cpu, cuda or cuda:N (default auto)"),
    "--out": (str, "run directory (default runs/<dataset>-<model>-<loss>-s<seed>)"),
    "--log-every": (int, "steps between logged records (default 10)"),
}


def _key(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgan", description="Train, compare and evaluate GANs on medical images.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one GAN", description="Train one GAN. Flags override --config, which overrides the defaults.")
    train.add_argument("--config", help="TOML file with training settings (keys as the flags, with _ for -)")
    for flag, (kind, text) in TRAIN_FLAGS.items():
        train.add_argument(flag, type=kind, default=None, help=text)
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard event files")

    sample = sub.add_parser("sample", help="generate images from a trained run")
    sample.add_argument("run_dir", help="a run directory written by `medgan train`")
    sample.add_argument("-n", type=int, default=1000, help="number of images (default 1000)")
    sample.add_argument("--out", required=True, help="FILE.npz (MedMNIST layout) or a folder for PNG files")
    sample.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    sample.add_argument("--device", default="auto")

    data = sub.add_parser("data", help="list datasets or show one")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("list", help="list the datasets medgan can load")
    info = data_sub.add_parser("info", help="describe one dataset and where its files are")
    info.add_argument("name")
    info.add_argument("--data-root", default=None)
    return parser


def cmd_train(args) -> int:
    from medgan.config import TrainConfig, default_out, from_dict, load_toml
    from medgan.train import Trainer, config_for_resume

    given = {_key(f): getattr(args, _key(f)) for f in TRAIN_FLAGS if getattr(args, _key(f)) is not None}
    base = load_toml(args.config) if args.config else TrainConfig()
    cfg = from_dict(given, base)
    if args.resume:
        cfg = config_for_resume(Path(cfg.out or default_out(cfg)), {k: getattr(cfg, k) for k in given})
    trainer = Trainer(cfg, progress=not args.no_progress, tensorboard=not args.no_tensorboard)
    out = trainer.fit(resume=args.resume)
    if trainer.stop_requested:
        print(f"interrupted: checkpoint written; continue with: medgan train --out {out} --resume", file=sys.stderr)
        return 130
    print(f"finished: {out}  (samples in {out / 'samples'}, TensorBoard: tensorboard --logdir {out})")
    return 0


def cmd_sample(args) -> int:
    from medgan.sample import generate, load_generator, write_images

    if args.n < 1:
        raise MedganError(f"-n must be >= 1, got {args.n}")
    images = generate(load_generator(args.run_dir, args.device), args.n, args.seed)
    print(f"wrote {len(images)} images to {write_images(images, args.out)}")
    return 0


def cmd_data(args) -> int:
    from medgan.data import dataset_names
    from medgan.data import medmnist as mm

    if args.data_command == "list":
        print("builtin          offline patches of an immunohistochemistry image (scikit-image), 3 channels")
        print("folder:PATH      class subfolders of images, optionally under train/ val/ test/")
        for name in mm.DATASETS:
            info = mm.INFO[name]
            print(f"{name:<16} {info['n_channels']} ch, {sum(info['n_samples'].values()):>6} images, {info['task']}")
        return 0
    name = args.name
    if name not in dataset_names():
        raise MedganError(f"unknown dataset {name!r}; choose from {', '.join(dataset_names())}")
    if name == "builtin":
        from medgan.data.builtin import COUNTS, LABEL_NAMES, __doc__ as text

        print(text.strip())
        print(f"splits: {COUNTS}; labels: {LABEL_NAMES}; any --size; 3 channels (use --channels 1 for grey)")
        return 0
    info = mm.INFO[name]
    print(f"{name}: {info['python_class']} ({info['license']})")
    print(info["description"])
    print(f"task: {info['task']}; channels: {info['n_channels']}; splits: {info['n_samples']}")
    print(f"labels: {info['label']}")
    for size in mm.SIZES:
        path = mm.data_root(args.data_root) / mm.file_name(name, size)
        print(f"size {size:>3}: {path} {'(present)' if path.exists() else '(missing; downloaded on first use)'}")
    return 0



def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "sample": cmd_sample, "data": cmd_data}
    with warnings.catch_warnings():
        warnings.simplefilter("always", MedganWarning)
        original = warnings.formatwarning
        warnings.formatwarning = lambda m, c, f, l, line=None: f"medgan: warning: {m}\n" if issubclass(c, MedganWarning) else original(m, c, f, l, line)
        try:
            return handlers[args.command](args)
        except MedganError as e:
            print(f"medgan: error: {e}", file=sys.stderr)
            return 2
        finally:
            warnings.formatwarning = original
