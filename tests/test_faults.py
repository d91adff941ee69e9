"""Faults a user meets: copied and moved runs, damaged or foreign checkpoints, empty inputs, unwritable
destinations. Each gives one clear line (exit 2, no traceback) and writes nothing where it was not asked.
The one-epoch run most tests start from is trained once per module and put back, at the same path, per test."""

import errno
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import offline_env, restore
from medgan import MedganError, MedganWarning, files
from medgan.cli import main
from medgan.data import load_dataset
from medgan.evaluation.domain import load_or_train

TRAIN = ["train", "--model", "mlp", "--epochs", "1", "--eval-every", "0", "--no-progress", "--no-tensorboard"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished one-epoch run at work/runs/a, trained once, and a pristine copy of work."""
    base = tmp_path_factory.mktemp("trained-run")
    with pytest.MonkeyPatch.context() as mp:
        offline_env(mp, tmp_path_factory)
        assert main([*TRAIN, "--out", str(base / "work" / "runs" / "a")]) == 0
    shutil.copytree(base / "work", base / "pristine", symlinks=True)
    return base / "work", base / "pristine"


@pytest.fixture
def run(trained_run):
    """The trained run as it was after training (same path: what it records about itself stays true)."""
    work, pristine = trained_run
    return restore(pristine, work) / "runs" / "a"


def snapshot(folder):
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_a_copied_run_resumes_where_it_is_and_leaves_the_original_alone(run, tmp_path, capsys):
    copy = tmp_path / "runs" / "b"
    shutil.copytree(run, copy)
    before = snapshot(run)
    assert main(["train", "--epochs", "2", "--no-progress", "--no-tensorboard", "--out", str(copy), "--resume"]) == 0
    assert snapshot(run) == before
    assert torch.load(copy / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    assert f'out = "{copy}"' in (copy / "config.toml").read_text()


def test_a_moved_run_resumes_samples_and_evaluates_in_place(run, tmp_path):
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(run, moved)
    assert main(["train", "--epochs", "2", "--no-progress", "--no-tensorboard", "--out", str(moved), "--resume"]) == 0
    assert main(["sample", str(moved), "-n", "4", "--out", str(tmp_path / "fake.npz"), "--device", "cpu"]) == 0
    assert not run.exists()


@pytest.mark.parametrize("damage", ["truncate", "flipped bit", "pickled code"])
def test_a_damaged_or_foreign_checkpoint_is_refused_in_one_line(run, tmp_path, capsys, damage):
    checkpoint = run / "checkpoints" / "last.pt"
    if damage == "truncate":
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
        expected = "cannot be read: it is truncated or corrupt"
    elif damage == "flipped bit":  # inside G's first weight matrix: torch's zip reader checks no CRC
        data = bytearray(checkpoint.read_bytes())
        weight = torch.load(checkpoint, weights_only=True)["generator"]["net.0.weight"]
        at = bytes(data).index(weight.reshape(-1)[:4].numpy().tobytes())
        data[at + 1] ^= 0x10
        checkpoint.write_bytes(bytes(data))
        expected = "do not match the checksum saved with them"
    else:
        checkpoint.write_bytes(pickle.dumps({"generator": shutil.rmtree}))  # a function: code, not tensors
        expected = "not a medgan checkpoint and was not loaded"
    out = tmp_path / "fake.npz"
    assert main(["sample", str(run), "-n", "4", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(checkpoint) in err and "Traceback" not in err
    assert not out.exists()
    assert main(["train", "--epochs", "2", "--no-progress", "--no-tensorboard", "--out", str(run), "--resume"]) == 2
    assert expected in capsys.readouterr().err


def test_evaluating_a_file_of_no_images_says_so(tmp_path, capsys):
    empty = tmp_path / "empty.npz"
    np.savez(empty, train_images=np.zeros((0, 28, 28), np.uint8), train_labels=np.zeros((0, 1), np.uint8))
    assert main(["evaluate", str(empty), "--dataset", "builtin", "--extractor", "domain"]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert not (tmp_path / "empty.metrics.json").exists()


def test_sampling_into_a_folder_that_cannot_be_made_says_so(run, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["sample", str(run), "-n", "4", "--out", str(blocker / "sub" / "fake.npz"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "choose another --out" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_a_damaged_cached_domain_extractor_is_trained_again(monkeypatch, capsys, cache_dir):
    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "10")
    train, test = load_dataset("builtin", "train", 28, 1), load_dataset("builtin", "test", 28, 1)
    load_or_train(train, test)
    (cached,) = (cache_dir / "extractors").glob("domain-*.pt")
    cached.write_bytes(cached.read_bytes()[:500])
    net, info = load_or_train(train, test)
    assert "unreadable" in capsys.readouterr().err and "test_auc" in info
    assert load_or_train(train, test)[1] == info  # the cache was written again, whole


def test_a_second_command_on_a_held_folder_says_what_holds_it(run, tmp_path, capsys):
    with files.FolderLock(tmp_path / "study", "medgan compare of study (3 of 12 runs done)"):
        assert main(["compare", "--preset", "quickstart", "--seeds", "1", "--out", str(tmp_path / "study")]) == 2
        assert "in use by medgan compare of study (3 of 12 runs done)" in capsys.readouterr().err
    with files.FolderLock(run, "medgan train of the run"):
        assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 2
        assert f"{run} is in use by medgan train of the run" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0  # released


def test_a_killed_holder_releases_its_folder(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from medgan.files import FolderLock\n"
            f"with FolderLock({str(tmp_path)!r}, 'test'):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(MedganError, match="in use by test"):
        files.FolderLock(tmp_path, "second").__enter__()
    holder.kill()
    holder.wait()
    with files.FolderLock(tmp_path, "second"):
        pass


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_or_read_only_destination_says_so_and_loses_nothing(run, monkeypatch, capsys, code):
    def refuse(obj, path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    before = (run / "checkpoints" / "last.pt").read_bytes()
    monkeypatch.setattr(torch, "save", refuse)  # the checkpoint write fails as on a full or read-only disk
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress", "--no-tensorboard"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medgan: error: cannot write") and os.strerror(code) in err and "Traceback" not in err
    monkeypatch.undo()
    assert (run / "checkpoints" / "last.pt").read_bytes() == before and not list(run.rglob("*.tmp"))
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress", "--no-tensorboard"]) == 0
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2


def test_a_folder_on_a_filesystem_without_locks_is_used_with_a_warning(tmp_path, monkeypatch):
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(MedganWarning, match="cannot be locked"):
        with files.FolderLock(tmp_path, "medgan train"):
            pass
