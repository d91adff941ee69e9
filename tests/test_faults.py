"""Faults a user meets: copied and moved runs, damaged or foreign checkpoints, empty inputs, unwritable
destinations. Each gives one clear line (exit 2, no traceback) and writes nothing where it was not asked."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from medgan.cli import main
from medgan.data import load_dataset
from medgan.evaluation.domain import load_or_train

TRAIN = ["train", "--model", "mlp", "--epochs", "1", "--eval-every", "0", "--no-progress", "--no-tensorboard"]


@pytest.fixture
def run(tmp_path):
    out = tmp_path / "runs" / "a"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


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


@pytest.mark.parametrize("damage", ["truncate", "pickled code"])
def test_a_damaged_or_foreign_checkpoint_is_refused_in_one_line(run, tmp_path, capsys, damage):
    checkpoint = run / "checkpoints" / "last.pt"
    if damage == "truncate":
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
        expected = "cannot be read: it is truncated or corrupt"
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
