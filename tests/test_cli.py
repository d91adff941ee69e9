import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from medgan.cli import main

FAST = [
    "--dataset",
    "builtin",
    "--epochs",
    "1",
    "--batch-size",
    "256",
    "--eval-every",
    "0",
    "--no-progress",
    "--no-tensorboard",
]


def test_train_then_sample_npz_and_png(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--loss", "gan", "--out", str(out)]) == 0
    assert "finished" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert main(["sample", str(out), "-n", "10", "--out", str(tmp_path / "fake.npz"), "--device", "cpu"]) == 0
    with np.load(tmp_path / "fake.npz", allow_pickle=False) as z:
        assert z["train_images"].shape == (10, 28, 28, 3) and z["train_images"].dtype == np.uint8
        assert z["train_labels"].shape == (10, 1)
    assert main(["sample", str(out), "-n", "3", "--out", str(tmp_path / "png")]) == 0
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "sample_00000.png",
        "sample_00001.png",
        "sample_00002.png",
    ]


def test_sample_is_deterministic(tmp_path):
    out = tmp_path / "run"
    main(["train", *FAST, "--channels", "1", "--out", str(out)])
    for name in ("a.npz", "b.npz"):
        main(["sample", str(out), "-n", "5", "--seed", "1", "--out", str(tmp_path / name)])
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert a["train_images"].shape == (5, 28, 28)
        assert np.array_equal(a["train_images"], b["train_images"])


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text('loss = "hinge"\nepochs = 5\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), *FAST, "--out", str(out)]) == 0  # --epochs 1 overrides the file
    text = (out / "config.toml").read_text()
    assert 'loss = "hinge"' in text and "epochs = 1" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dataset", "nosuchmnist"], "unknown dataset 'nosuchmnist'"),
        (["train", "--dataset", "pneumoniamnist", "--data-root", "/nonexistent"], "Download https://"),
        (["train", "--loss", "wgangp"], "loss must be one of"),
        (["train", "--dataset", "folder:/nonexistent"], "does not exist"),
        (["sample", "/nonexistent", "--out", "x.npz"], "not a medgan run directory"),
        (["data", "info", "nosuchmnist"], "unknown dataset"),
    ],
)
def test_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("medgan: error:")


def test_resume_flag_errors(tmp_path, capsys):
    assert main(["train", *FAST, "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    main(["train", *FAST, "--out", str(tmp_path / "r")])
    assert main(["train", *FAST, "--out", str(tmp_path / "r")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", *FAST[:-4], "--epochs", "2", "--no-progress", "--out", str(tmp_path / "r"), "--resume"]) == 0


def test_data_commands(capsys):
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    for name in ("builtin", "folder:PATH", "pathmnist", "chestmnist", "pneumoniamnist", "organsmnist"):
        assert name in listing
    assert main(["data", "info", "pneumoniamnist", "--data-root", "/nonexistent"]) == 0
    info = capsys.readouterr().out
    assert "4708" in info and "pneumoniamnist_224.npz" in info and "CC BY 4.0" in info


@pytest.mark.slow
def test_sigterm_writes_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "medgan",
        "train",
        "--dataset",
        "builtin",
        "--model",
        "dcgan",
        "--width",
        "16",
        "--epochs",
        "3",
        "--eval-every",
        "0",
        "--no-progress",
        "--log-every",
        "1",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert (out / "checkpoints" / "last.pt").exists()
    done = subprocess.run(
        [*cmd[:-2], "--epochs", "1", "--out", str(out), "--resume"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_done"] == 1 and len(info["segments"]) == 2


@pytest.mark.slow
def test_best_recipe_is_a_starting_point_that_flags_override(tmp_path, capsys):
    from medgan.config import load_toml

    out = tmp_path / "best"
    assert (
        main(["train", "--recipe", "small-data", *FAST, "--width", "8", "--no-spectral-norm", "--out", str(out)]) == 0
    )
    cfg = load_toml(out / "config.toml")
    assert (cfg.model, cfg.loss, cfg.width, cfg.spectral_norm, cfg.epochs) == ("dcgan", "hinge", 8, False, 1)
    assert cfg.ema > 0 and cfg.augment
    assert main(["train", "--recipe", "best", *FAST, "--out", str(tmp_path / "plain")]) == 0
    assert (
        load_toml(tmp_path / "plain" / "config.toml").model,
        load_toml(tmp_path / "plain" / "config.toml").loss,
    ) == ("dcgan", "lsgan")
    assert main(["train", "--recipe", "fastest", *FAST, "--out", str(tmp_path / "x")]) == 2
    assert "unknown recipe 'fastest'; choose from best, small-data" in capsys.readouterr().err


def test_train_seed_list_packs_them_into_one_folder_each(tmp_path, capsys):
    out = tmp_path / "seeds"
    argv = ["train", *FAST, "--model", "dcgan", "--width", "8", "--out", str(out), "--seed", "0,1"]
    assert main(argv) == 0
    assert "finished" in capsys.readouterr().out
    for seed in (0, 1):
        info = json.loads((out / f"s{seed}" / "run.json").read_text())
        assert info["status"] == "finished" and info["epochs_done"] == 1
        assert f"seed = {seed}" in (out / f"s{seed}" / "config.toml").read_text()
    assert (
        main(["train", *FAST[:-4], "--epochs", "2", "--no-progress", "--out", str(out), "--seed", "0,1", "--resume"])
        == 0
    )
    assert all(json.loads((out / f"s{seed}" / "run.json").read_text())["epochs_done"] == 2 for seed in (0, 1))
    assert main(["train", *FAST, "--seed", "0,x"]) == 2
    assert "--seed takes" in capsys.readouterr().err
    assert main(["train", *FAST, "--seed", "1,1"]) == 2
    assert "distinct" in capsys.readouterr().err
    assert main(["train", *FAST, "--conditional", "--seed", "0,1", "--out", str(tmp_path / "p")]) == 2
    assert "does not support" in capsys.readouterr().err and not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "argv, line",
    [
        (["train", "--preset", "best"], "medgan train: --preset is now --recipe (training recipes: best, small-data)"),
        (
            ["train", "--dataset", "builtin", "--seeds", "0,1,2"],
            "medgan train: --seeds is now --seed, which takes one seed or a comma list (--seed 0,1,2)",
        ),
    ],
)
def test_old_spellings_are_a_one_line_error_naming_the_new(argv, line, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == line + "\n"


def test_one_seed_where_a_command_takes_one(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--out", str(tmp_path / "x.npz"), "--seed", "0,1"]) == 2
    err = capsys.readouterr().err
    assert "--seed takes one seed here" in err and "Traceback" not in err


def test_shared_flags_mean_the_same_in_every_command():
    """--preset is a study preset only in compare (train takes --recipe); --seeds a count wherever it is taken;
    the data and device flags have one help and one default (None: not given) in every command."""
    from medgan.cli import SHARED_FLAGS, build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    declared = {
        name: {a.option_strings[0]: a for a in parser._actions if a.option_strings} for name, parser in commands.items()
    }
    for flag in ("--dataset", "--data-root", "--size", "--channels", "--device"):
        for name in ("evaluate", "validate-metrics"):
            action = declared[name][flag]
            assert action.default is None and action.type is SHARED_FLAGS[flag][0], (name, flag)
            assert flag == "--dataset" or action.help == SHARED_FLAGS[flag][1], (name, flag)
    for name, flags in declared.items():
        for flag in ("--data-root", "--size", "--channels", "--device", "--precision"):
            if flag in flags:
                assert flags[flag].default is None and flags[flag].help == SHARED_FLAGS[flag][1], (name, flag)
    assert "--recipe" in declared["train"] and declared["train"]["--preset"].help == "==SUPPRESS=="
    assert "--recipe" not in declared["compare"] and "--preset" in declared["compare"]
    assert declared["compare"]["--seeds"].type is int and declared["validate-metrics"]["--seeds"].type is int
    assert declared["train"]["--seeds"].help == "==SUPPRESS=="


def test_validate_metrics_takes_the_default_size(monkeypatch, capsys):
    """No --size: 28 px, as evaluate takes for a file (the shared default None, resolved to TrainConfig's)."""
    from types import SimpleNamespace

    import medgan.data
    from medgan.config import TrainConfig

    asked = []

    def load_dataset(name, split, size, channels=None, root=None):
        asked.append(size)
        if split == "test":
            raise medgan.MedganError("stop here")
        return SimpleNamespace(channels=1)

    monkeypatch.setattr(medgan.data, "load_dataset", load_dataset)
    assert main(["validate-metrics", "--dataset", "pneumoniamnist"]) == 2
    assert main(["evaluate", __file__, "--dataset", "pneumoniamnist", "--extractor", "domain"]) == 2
    assert asked == [TrainConfig.size] * 4 and TrainConfig.size == 28  # train and test splits, both commands
