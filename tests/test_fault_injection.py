"""Fault injection on the real CLI, on tiny data: ``kill -9`` of ``train`` and of ``compare`` at a random
moment (real subprocesses), then the same command again; damaged files (truncated, or one byte flipped) of a
finished run and study, then the commands that read them.

Each case asserts: no traceback; exit status 0, or 2 with one line naming the damaged file; nothing written
outside the folders given (the study or run folder, the data folder, the cache); nothing finished lost, and
where medgan promises exactness (a resumed run on the CPU) the same result as an uninterrupted run.
The kill moments and flipped bytes are drawn from ``MEDGAN_FAULT_SEED`` (default 0, so a run repeats the last
one; another value draws other moments). It is in pytest's report header, printed by each kill test and named
in its failure messages. The finished study the damaged-file cases read is trained once per module and put
back, at the same path, before each case.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FAULT_SEED, offline_env, restore, write_medmnist
from medgan.cli import main

SEED = FAULT_SEED  # MEDGAN_FAULT_SEED, default 0
TINY = [
    "--dataset",
    "pneumoniamnist",
    "--model",
    "mlp",
    "--batch-size",
    "16",
    "--eval-samples",
    "64",
    "--no-progress",
    "--checkpoint-every-s",
    "0",
]


@pytest.fixture
def place(tmp_path, monkeypatch):
    """tmp_path/data (tiny MedMNIST files), tmp_path/cache (MEDGAN_CACHE); the environment of every command."""
    root = write_medmnist(tmp_path / "data", n=(96, 16, 48))
    env = {
        **os.environ,
        "MEDGAN_CACHE": str(tmp_path / "cache"),
        "MEDGAN_DOMAIN_STEPS": "20",
        "MEDGAN_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    for key in ("MEDGAN_CACHE", "MEDGAN_DOMAIN_STEPS", "MEDGAN_OFFLINE"):
        monkeypatch.setenv(key, env[key])
    return tmp_path, root, env


def medgan(
    args: list[str], env: dict, kill_after: float | None = None, started: Path | None = None
) -> subprocess.CompletedProcess | None:
    """``medgan ARGS`` in a subprocess; with ``kill_after``: SIGKILL it that many seconds after ``started`` exists."""
    process = subprocess.Popen(
        [sys.executable, "-m", "medgan", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if kill_after is None:
        out, err = process.communicate(timeout=600)
        return subprocess.CompletedProcess(args, process.returncode, out, err)
    deadline = time.time() + 120
    while started is not None and not started.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(kill_after)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return None


def clean(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr


def only_given_folders(tmp_path: Path, *given: str) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"data", "cache", *given})


@pytest.mark.slow
def test_kill_9_during_train_then_resume_equals_an_uninterrupted_run(place):
    tmp_path, root, env = place
    args = [*TINY, "--data-root", str(root), "train", "--epochs", "6", "--seed", "1"]
    args = args[args.index("train") :] + args[: args.index("train")]
    clean(medgan([*args, "--out", str(tmp_path / "whole")], env))
    moment = random.Random(SEED).uniform(0.0, 3.0)
    print(f"MEDGAN_FAULT_SEED={SEED}: kill -9 of train {moment:.2f} s after it started")
    medgan(
        [*args, "--out", str(tmp_path / "killed")], env, kill_after=moment, started=tmp_path / "killed" / "config.toml"
    )
    resume = ["--resume"] if (tmp_path / "killed" / "checkpoints" / "last.pt").exists() else []
    clean(medgan([*args, "--out", str(tmp_path / "killed"), *resume], env))
    whole, killed = (
        torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True) for name in ("whole", "killed")
    )
    for net in ("generator", "discriminator"):
        for key, value in whole[net].items():
            assert torch.equal(value, killed[net][key]), (
                f"{net}.{key} differs (MEDGAN_FAULT_SEED={SEED}, killed at {moment:.2f} s)"
            )
    only_given_folders(tmp_path, "whole", "killed")


@pytest.mark.slow
def test_kill_9_during_compare_then_rerun_loses_nothing_finished(place):
    tmp_path, root, env = place
    study = [
        "compare",
        "--dataset",
        "pneumoniamnist",
        "--data-root",
        str(root),
        "--models",
        "mlp",
        "--losses",
        "lsgan,hinge",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--eval-samples",
        "64",
    ]
    clean(medgan([*study, "--out", str(tmp_path / "whole")], env))
    moment = random.Random(SEED + 1).uniform(0.0, 12.0)
    print(f"MEDGAN_FAULT_SEED={SEED}: kill -9 of compare {moment:.2f} s after it started")
    medgan(
        [*study, "--out", str(tmp_path / "killed")], env, kill_after=moment, started=tmp_path / "killed" / "study.json"
    )
    finished = {
        p.parents[1].name: p.read_bytes()
        for p in (tmp_path / "killed" / "runs").glob("*/checkpoints/last.pt")
        if '"status": "finished"' in (p.parents[1] / "run.json").read_text()
    }
    clean(medgan([*study, "--out", str(tmp_path / "killed")], env))
    for name, before in finished.items():  # finished before the kill: kept as they were, not trained again
        assert (tmp_path / "killed" / "runs" / name / "checkpoints" / "last.pt").read_bytes() == before
    whole, killed = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("whole", "killed"))
    assert [r["status"] for r in killed["runs"]] == ["finished"] * 4
    for a, b in zip(whole["runs"], killed["runs"]):
        assert a["name"] == b["name"] and a["metrics"] == b["metrics"], (
            f"{a['name']} (MEDGAN_FAULT_SEED={SEED}, killed at {moment:.2f} s)"
        )
    only_given_folders(tmp_path, "whole", "killed")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[random.Random(SEED + len(data)).randrange(len(data))] ^= 0xFF
    path.write_bytes(bytes(data))


def study_args(root: Path, out: Path) -> list[str]:
    return [
        "compare",
        "--dataset",
        "pneumoniamnist",
        "--data-root",
        str(root),
        "--models",
        "mlp",
        "--losses",
        "lsgan",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--eval-samples",
        "64",
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def trained_study(tmp_path_factory):
    """work/{data,cache,study} as ``place`` and ``compare`` leave them, trained once; and a pristine copy."""
    base = tmp_path_factory.mktemp("finished-study")
    work = base / "work"
    with pytest.MonkeyPatch.context() as mp:
        offline_env(mp, tmp_path_factory)
        root = write_medmnist(work / "data", n=(96, 16, 48))
        mp.setenv("MEDGAN_CACHE", str(work / "cache"))
        mp.setenv("MEDGAN_DOMAIN_STEPS", "20")
        study = study_args(root, work / "study")
        assert main(study) == 0
    shutil.copytree(work, base / "pristine", symlinks=True)
    return work, base / "pristine", study


@pytest.fixture
def finished_study(trained_study, monkeypatch):
    """The trained study put back as it was (same paths), with ``place``'s environment."""
    work, pristine, study = trained_study
    restore(pristine, work)
    for key, value in {"MEDGAN_CACHE": str(work / "cache"), "MEDGAN_DOMAIN_STEPS": "20", "MEDGAN_OFFLINE": "1"}.items():
        monkeypatch.setenv(key, value)
    return work, study


@pytest.mark.parametrize("damage", [truncate, flip])
@pytest.mark.parametrize(
    "name",
    [
        "runs/mlp-lsgan-s0/config.toml",
        "runs/mlp-lsgan-s0/run.json",
        "runs/mlp-lsgan-s0/metrics.jsonl",
        "runs/mlp-lsgan-s0/checkpoints/last.pt",
        "study.json",
        "results.json",
    ],
)
def test_a_damaged_file_gives_one_line_or_is_recovered(finished_study, capsys, damage, name):
    tmp_path, study = finished_study
    path = tmp_path / "study" / name
    damage(path)
    capsys.readouterr()
    run = tmp_path / "study" / "runs" / "mlp-lsgan-s0"
    for command in (study, ["sample", str(run), "-n", "8", "--out", str(tmp_path / "study" / "fake.npz")]):
        try:
            code = main(command)
        except SystemExit as e:  # argparse
            code = e.code
        err = capsys.readouterr().err
        assert code in (0, 2), err
        if code == 2:
            assert err.count("medgan: error:") == 1 and str(run) in err or str(path) in err, err
    only_given_folders(tmp_path, "study")
