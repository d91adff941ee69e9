"""The ``medgan`` command line: ``train``, ``sample``, ``compare``, ``evaluate``, ``validate-metrics``, ``data``."""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from pathlib import Path

from medgan import MedganError, MedganWarning

# Each command imports the modules it needs when it runs: importing torch takes seconds, `medgan --help` should not.

# Flags that mean the same in every command that takes them, declared once (``_add_flags``) with one default: None,
# i.e. not given (train: --config's value, else TrainConfig's default; evaluate: a run's own; the help says which).
# --seed is read as text: train takes a comma list (one run per seed, packed), every other command one seed.
SHARED_FLAGS = {
    "--dataset": (str, "builtin, folder:PATH or a MedMNIST name (see `medgan data list`)"),
    "--data-root": (str, "folder holding the MedMNIST .npz files (default $MEDGAN_DATA, else ~/.medmnist)"),
    "--size": (int, "image size: 28, 64, 128 or 224 for MedMNIST (default 28; for a run: its own)"),
    "--channels": (int, "1 or 3 (default: the dataset's own)"),
    "--seed": (str, "random seed (default 0)"),
    "--device": (str, "auto, cpu, cuda or cuda:N (default auto)"),
    "--precision": (
        str,
        "fp32, bf16 (bfloat16 autocast: ~2x per step on a CPU with AMX or AVX512-BF16), or auto: bf16 where the "
        "device has bf16 units (default fp32)",
    ),
    "--out": (str, "where the results go"),
}
SEED_LIST = (
    "random seed (default 0), or comma-separated seeds, e.g. 0,1,2: one run per seed, trained at once as one pack "
    "(medgan.packed), each in its own folder: --out DIR/s<seed> (default runs/<dataset>-<model>-<loss>-s<seed>)"
)

# CLI flag -> TrainConfig key; each flag's default is None so we know which ones the user gave.
TRAIN_FLAGS = {
    **{f: SHARED_FLAGS[f] for f in ("--dataset", "--data-root", "--size", "--channels")},
    "--model": (str, "mlp, mlp-bn, dcgan, resnet or progressive"),
    "--loss": (str, "gan, lsgan, wgan, wgan-gp or hinge"),
    "--epochs": (int, "number of epochs (default 50)"),
    "--max-minutes": (
        float,
        "wall-time budget: stop after the first epoch that ends past it, counting resumed segments (default 0 = none)",
    ),
    "--batch-size": (int, "batch size (default 64)"),
    "--lr": (float, "Adam learning rate (default 2e-4)"),
    "--lr-d": (float, "discriminator learning rate, for two time-scale updates (default 0 = --lr)"),
    "--beta1": (float, "Adam beta1 (default 0.5)"),
    "--beta2": (float, "Adam beta2 (default 0.999)"),
    "--n-critic": (int, "D steps per G step (default 5 for wgan/wgan-gp, else 1)"),
    "--latent-dim": (int, "size of the noise vector (default 100)"),
    "--width": (int, "base channel width of the dcgan and resnet nets (default 64)"),
    "--spectral-norm": (bool, "spectral normalisation on every layer of D (default off)"),
    "--minibatch-std": (
        bool,
        "D (dcgan, resnet) sees each group of 4 images' feature std as one more channel (default off)",
    ),
    "--r1": (float, "R1 penalty weight gamma on D's gradient at real images (default 0 = off)"),
    "--augment": (str, "DiffAugment policy for D's inputs: comma-separated translation,cutout,color (default off)"),
    "--augment-target": (
        float,
        "ADA: apply the augment policy with a probability adapted so that D's sign on real images averages this, "
        "e.g. 0.6 (default 0 = always)",
    ),
    "--conditional": (bool, "class-conditional G and D on the dataset's labels (one sample-grid row per class)"),
    "--ema": (
        float,
        "decay of the generator weight average used for samples and evaluation, e.g. 0.999 (default 0 = off)",
    ),
    "--stages": (
        str,
        "progressive: SIZE:EPOCHS of every stage but the last, e.g. 32:10,64 "
        "(the last stage takes the remaining epochs)",
    ),
    "--fade-epochs": (float, "progressive: epochs over which each new resolution fades in (default 1)"),
    **{f: SHARED_FLAGS[f] for f in ("--seed", "--device", "--precision", "--out")},
    "--log-every": (int, "steps between logged records (default 10)"),
    "--eval-every": (
        int,
        "evaluate with the domain extractor at most every K epochs, as --eval-share allows, and at the end "
        "(default 1; 0 = never)",
    ),
    "--eval-share": (
        float,
        "the most of the wall time that evaluations during training may take "
        "(default 0.08; 1 = every --eval-every epochs)",
    ),
    "--checkpoint-every-s": (
        float,
        "seconds between checkpoints, also written at the end and on Ctrl-C (default 60; 0 = every epoch)",
    ),
    "--grid-every-s": (float, "seconds between sample grids, also written at the end (default 120; 0 = every epoch)"),
    "--eval-samples": (int, "generated images per evaluation during training (default 2000)"),
    "--keep-best": (
        str,
        "c2st, fd_domain, kid_domain, precision_domain, recall_domain or coverage_domain: evaluate on the "
        "validation split and keep checkpoints/best.pt, which sample and evaluate then use (default off)",
    ),
}

# Settings a study shares across all its runs (model and loss are what a study varies).
COMPARE_TRAIN_FLAGS = tuple(
    f for f in TRAIN_FLAGS if f not in ("--dataset", "--model", "--loss", "--seed", "--out", "--log-every")
)


def _key(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _add_flags(parser: argparse.ArgumentParser, flags, required=(), **texts: str) -> None:
    """Add ``flags`` (of ``SHARED_FLAGS`` or ``TRAIN_FLAGS``) to a command, each with default None; ``texts``:
    a command's own help for a flag, by key (``out="run directory"``)."""
    for flag in flags:
        kind, text = {**SHARED_FLAGS, **TRAIN_FLAGS}[flag]
        text = texts.get(_key(flag), text)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, type=kind, default=None, required=flag in required, help=text)


class _OldSpelling(Exception):
    """A flag given in its old spelling; the message is the whole line ``main`` prints."""


class _Renamed(argparse.Action):
    """A flag that was renamed: giving it is a one-line error naming the new one (exit code 2, like argparse's)."""

    def __init__(self, option_strings, dest, now: str = "", **kwargs):
        self.now = now
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        raise _OldSpelling(f"{parser.prog}: {option_string} is now {self.now}")


def _recipe_names() -> str:
    from medgan.recipes import RECIPES

    return ", ".join(RECIPES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgan", description="Train, compare and evaluate GANs on medical images.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train one GAN",
        description="Train one GAN. Flags override --config, which overrides the defaults.",
    )
    train.add_argument("--config", help="TOML file with training settings (keys as the flags, with _ for -)")
    train.add_argument(
        "--recipe",
        help=f"a training recipe to start from, overridden by --config and flags: {_recipe_names()} (by image size)",
    )
    _add_flags(train, TRAIN_FLAGS, seed=SEED_LIST, out="run directory (default runs/<dataset>-<model>-<loss>-s<seed>)")
    train.add_argument("--preset", action=_Renamed, now=f"--recipe (training recipes: {_recipe_names()})")
    train.add_argument("--seeds", action=_Renamed, now="--seed, which takes one seed or a comma list (--seed 0,1,2)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard event files")

    sample = sub.add_parser("sample", help="generate images from a trained run")
    sample.add_argument("run_dir", help="a run directory written by `medgan train`")
    sample.add_argument("-n", type=int, default=1000, help="number of images (default 1000)")
    _add_flags(sample, ["--out"], required=["--out"], out="FILE.npz (MedMNIST layout) or a folder for PNG files")
    _add_flags(sample, ["--seed"], seed="noise seed (default 0)")
    sample.add_argument(
        "--labels",
        default="balanced",
        choices=["balanced", "as-train"],
        help="conditional runs: classes in turn (balanced, default) or label rows drawn from the train split",
    )
    sample.add_argument(
        "--with-real-splits",
        action="store_true",
        help=".npz: also copy the real val and test splits, so medgan and MedMNIST tools load the file as a dataset",
    )
    _add_flags(sample, ["--device"])
    sample.add_argument(
        "--checkpoint",
        default="auto",
        choices=["auto", "best", "last"],
        help="best (kept by keep_best), last, or auto = best when the run kept one (default)",
    )

    cmp = sub.add_parser(
        "compare",
        help="train many variants x seeds under identical settings and aggregate",
        description="Runs go to OUT/runs/<model>-<loss>-s<seed>/; re-running skips finished runs and resumes the rest.",
    )
    cmp.add_argument("--preset", help="quickstart or seed-chestmnist (flags override it)")
    cmp.add_argument(
        "--config", help="TOML study file: dataset, models, losses, seeds, out; shared settings under [train]"
    )
    _add_flags(cmp, ["--dataset"])
    cmp.add_argument("--models", help="comma-separated, e.g. mlp,dcgan")
    cmp.add_argument("--losses", help="comma-separated, e.g. gan,lsgan,wgan,wgan-gp")
    cmp.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    _add_flags(cmp, ["--out"], out="study directory (default study)")
    cmp.add_argument(
        "--backend",
        default="local",
        choices=["local", "ray"],
        help="local: runs in sequence (default); ray: one Ray task per run",
    )
    cmp.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray instance)")
    cmp.add_argument(
        "--pack",
        default="off",
        help="train runs that differ only in seed and loss K at a time as one pack "
        "(one set of kernels; each run keeps its own folder): off (default), K, or auto: pack where a few seconds "
        "of measurement on the device say it is faster (never on a CPU, where it was measured slower)",
    )
    _add_flags(cmp, COMPARE_TRAIN_FLAGS)

    ev = sub.add_parser("evaluate", help="metrics of generated images against the real data, with real-vs-real floors")
    ev.add_argument("source", help="a run directory, a MedMNIST-format FILE.npz (train_images) or a folder of images")
    _add_flags(
        ev,
        ["--dataset", "--data-root", "--size", "--channels", "--seed", "--device"],
        dataset="the real dataset (default for a run: its own)",
        seed="random seed of the generated images from a run and of the metrics (default 0)",
    )
    ev.add_argument(
        "--extractor",
        default="domain,inception",
        help=EXTRACTOR_HELP,
    )
    ev.add_argument("-n", type=int, default=10000, help="generated images from a run (default 10000)")
    ev.add_argument("--inception-weights", default=None, help="path of weights-inception-2015-12-05-6726825d.pth")
    _add_flags(ev, ["--out"], out="metrics JSON path (default: metrics.json beside the source)")
    ev.add_argument(
        "--checkpoint", default="auto", choices=["auto", "best", "last"], help="a run's checkpoint, as for sample"
    )

    val = sub.add_parser(
        "validate-metrics",
        help="check that each metric notices disturbed real images (FID-paper protocol)",
        description="Disturbs real test images (noise, blur, salt-and-pepper, rectangles, swirl, mixed-in "
        "images) at 4 levels and reports which metrics grow monotonically and beyond their own noise.",
    )
    _add_flags(val, ["--dataset", "--data-root", "--size", "--channels", "--device"], required=["--dataset"])
    val.add_argument(
        "--extractor",
        default="domain,inception",
        help=EXTRACTOR_HELP,
    )
    val.add_argument(
        "--samples", type=int, default=1000, help="images per side (disturbed, reference), at most half the test split"
    )
    val.add_argument("--seeds", type=int, default=5, help="random splits for the seed-to-seed spread (default 5)")
    val.add_argument("--inception-weights", default=None)
    _add_flags(val, ["--out"], out="output folder (default runs/validate-<dataset>)")

    data = sub.add_parser("data", help="list datasets or show one")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("list", help="list the datasets medgan can load")
    info = data_sub.add_parser("info", help="describe one dataset and where its files are")
    info.add_argument("name")
    _add_flags(info, ["--data-root"])
    return parser


def cmd_train(args) -> int:
    from medgan import api

    given = {_key(f): getattr(args, _key(f)) for f in TRAIN_FLAGS if getattr(args, _key(f)) is not None}
    seeds = _seeds(given.pop("seed", None))
    if seeds:
        given["seed"] = seeds if len(seeds) > 1 else seeds[0]
    trained = api.train(
        args.recipe,
        args.config,
        args.resume,
        progress=not args.no_progress,
        tensorboard=not args.no_tensorboard,
        **given,
    )
    runs = trained if isinstance(trained, list) else [trained]
    folders = " ".join(str(run.path) for run in runs)
    if any(run.interrupted for run in runs):
        if len(runs) == 1:
            print(
                f"interrupted: checkpoint written; continue with: medgan train --out {folders} --resume",
                file=sys.stderr,
            )
        else:
            print(
                f"interrupted: checkpoints written; continue with the same command and --resume ({folders})",
                file=sys.stderr,
            )
        return 130
    if len(runs) == 1:
        out = runs[0].path
        print(f"finished: {out}  (samples in {out / 'samples'}, TensorBoard: tensorboard --logdir {out})")
    else:
        print(f"finished: {folders}")
    return 0


def _seeds(text: str | None) -> list[int]:
    """``--seed``: one seed or a comma list of distinct ones (``0,1,2``); [] when not given."""
    if text is None:
        return []
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise MedganError(f"--seed takes a whole number or comma-separated ones, e.g. 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise MedganError(f"--seed takes one seed or distinct comma-separated seeds (e.g. 0,1,2); got {text!r}")
    return seeds


def _one_seed(text: str | None) -> int:
    """``--seed`` of a command that takes one seed (default 0)."""
    seeds = _seeds(text) or [0]
    if len(seeds) > 1:
        raise MedganError(f"--seed takes one seed here (a comma list packs runs in `medgan train`); got {text!r}")
    return seeds[0]


def cmd_sample(args) -> int:
    from medgan import api
    from medgan.data import load_split
    from medgan.sample import write_images

    seed = _one_seed(args.seed)
    run = api.load(args.run_dir)
    images, labels = run.sample_with_labels(args.n, seed, args.labels, args.checkpoint, args.device or "auto")
    real = {}
    if args.with_real_splits:
        if not args.out.endswith(".npz"):
            raise MedganError("--with-real-splits needs an --out FILE.npz")
        real = {split: load_split(run.config, split) for split in ("val", "test")}
    out = write_images(images, args.out, labels, real)
    print(f"wrote {len(images)} images" + (f" with {args.labels} labels" if labels is not None else "") + f" to {out}")
    return 0


def cmd_compare(args) -> int:
    from medgan import api

    split = lambda text: [t.strip() for t in text.split(",") if t.strip()] if text else None
    train = {_key(f): getattr(args, _key(f)) for f in COMPARE_TRAIN_FLAGS if getattr(args, _key(f)) is not None}
    results = api.compare(
        args.preset,
        args.config,
        args.backend,
        args.ray_address,
        args.pack,
        dataset=args.dataset,
        models=split(args.models),
        losses=split(args.losses),
        seeds=args.seeds,
        out=args.out,
        train=train,
    )
    failed = sum(r["status"] != "finished" for r in results["runs"])
    print(
        f"wrote {results['out']}/report.md, results.csv, results.json "
        f"({len(results['runs'])} runs, {failed} not finished)"
    )
    return 0


def cmd_evaluate(args) -> int:
    from medgan import api, files
    from medgan.evaluation.evaluate import format_table, save_closest_pairs
    from medgan.runlog import versions

    source = Path(args.source)
    scores = api.evaluate(
        source,
        dataset=args.dataset,
        n=args.n,
        extractors=_extractor_names(args.extractor),
        size=args.size,
        channels=args.channels,
        data_root=args.data_root,
        seed=_one_seed(args.seed),
        device=args.device or "auto",
        checkpoint=args.checkpoint,
        inception_weights=args.inception_weights,
    )
    if args.out:
        out = Path(args.out)
    else:
        out = source.with_suffix(".metrics.json") if source.is_file() else source / "metrics.json"
    scores["versions"] = versions()
    files.write_json(out, dict(scores))
    save_closest_pairs(
        scores.images, scores.train, scores["memorisation"], out.with_name(out.stem + "_nearest_train.png")
    )
    print(format_table(scores))
    print(f"\nwrote {out}")
    return 0


def cmd_validate_metrics(args) -> int:
    from medgan.config import TrainConfig
    from medgan.data import load_dataset
    from medgan.device import resolve_device
    from medgan.evaluation.metric_validation import to_markdown, validate_metrics, write_validation

    extractors = _extractor_names(args.extractor)
    size = args.size or TrainConfig.size
    train = load_dataset(args.dataset, "train", size, args.channels, args.data_root)
    test = load_dataset(args.dataset, "test", size, train.channels, args.data_root)
    out = Path(args.out or f"runs/validate-{args.dataset.replace('/', '_').replace(':', '-')}")
    try:
        result = validate_metrics(
            train,
            test,
            extractors,
            args.samples,
            args.seeds,
            resolve_device(args.device or "auto"),
            args.inception_weights,
            log=lambda text: print(text, file=sys.stderr),
        )
    except ValueError as e:
        raise MedganError(str(e)) from None
    write_validation(result, out)
    print(to_markdown(result))
    print(f"wrote {out}/validation.md, validation.json, validation.png")
    return 0


EXTRACTOR_HELP = (
    "comma-separated: domain, inception (default both), efficientnet (the imagenet extra), "
    "torchscript:PATH[?size=..&mean=a/b/c&std=..&channels=3], or a registered name"
)


def _extractor_names(text: str) -> list[str]:
    from medgan.evaluation.extractors import check_spec, names, split_specs

    specs = split_specs(text)
    if not specs:
        raise MedganError(f"--extractor names none; choose from {', '.join(names())} or torchscript:PATH")
    for spec in specs:
        check_spec(spec)
    return specs


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
        from medgan.data.builtin import COUNTS, LABEL_NAMES
        from medgan.data.builtin import __doc__ as text

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


UNWRITABLE = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
)  # a full disk, a read-only or forbidden place


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _OldSpelling as e:
        print(e, file=sys.stderr)
        return 2
    handlers = {
        "train": cmd_train,
        "sample": cmd_sample,
        "compare": cmd_compare,
        "evaluate": cmd_evaluate,
        "validate-metrics": cmd_validate_metrics,
        "data": cmd_data,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("always", MedganWarning)
        original = warnings.formatwarning
        warnings.formatwarning = lambda m, c, f, l, line=None: (
            f"medgan: warning: {m}\n" if issubclass(c, MedganWarning) else original(m, c, f, l, line)
        )
        try:
            return handlers[args.command](args)
        except MedganError as e:
            print(f"medgan: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            if e.errno not in UNWRITABLE:
                raise
            print(
                f"medgan: error: cannot write {e.filename or 'a file'}: {e.strerror}. Free some space or choose a "
                "writable --out; the files written before are intact (every write is atomic) and --resume continues "
                "an interrupted run.",
                file=sys.stderr,
            )
            return 2
        finally:
            warnings.formatwarning = original
