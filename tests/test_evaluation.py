import json

import pytest
import torch

from conftest import SHARED_DATA, needs_shared_data, write_medmnist
from medgan import MedganError, MedganWarning
from medgan.cli import main
from medgan.data import load_dataset
from medgan.evaluation.domain import ARCHITECTURE, DomainExtractor, train_domain_net
from medgan.evaluation.evaluate import evaluate, format_table
from medgan.evaluation.inception import InceptionExtractor, Unavailable, find_weights

STEPS = 150  # domain-net steps for tests: enough for the blob data below


@pytest.fixture
def blobs(tmp_path):
    root = write_medmnist(tmp_path / "data", n=(512, 64, 128))
    return load_dataset("pneumoniamnist", "train", root=root), load_dataset("pneumoniamnist", "test", root=root)


@pytest.mark.slow
def test_domain_extractor_learns_the_labels(blobs, recwarn):
    train, test = blobs
    net, info = train_domain_net(train, test, steps=STEPS)
    assert info["task"] == "multi-class" and info["n_outputs"] == 2
    assert info["test_acc"] > 0.9 and info["test_auc"] > 0.95, info
    assert info["reference_resnet18_28"] == {"auc": 0.944, "acc": 0.854}


def test_domain_extractor_is_cached_and_rotation_for_unlabelled(blobs, cache_dir):
    train, test = blobs
    first = DomainExtractor(train, test, steps=20)
    assert list((cache_dir / "extractors").glob("domain-*.pt"))
    second = DomainExtractor(train, test, steps=20)
    assert first.info == second.info
    features, logits = second(test.uint8()[:10])
    assert features.shape == (10, 32 + 64 + 128) and logits.shape == (10, 2)  # pooled features of every block
    assert first.info["architecture"] == ARCHITECTURE
    # blocks scaled to a mean feature std of 1 on the train split, so none dominates the distances
    stds = first(train.uint8()[:500])[0].std(0).split([32, 64, 128])
    assert all(0.8 < float(block.mean()) < 1.2 for block in stds), [float(b.mean()) for b in stds]
    unlabelled = type(train)(train.images, torch.zeros_like(train.labels), "folder:x", "train")
    _, info = train_domain_net(unlabelled, unlabelled, steps=20)
    assert info["task"] == "rotation" and info["n_outputs"] == 4


def test_domain_cache_key_changes_with_the_architecture(blobs, cache_dir, monkeypatch):
    import medgan.evaluation.domain as domain

    train, test = blobs
    DomainExtractor(train, test, steps=10)
    monkeypatch.setattr(domain, "ARCHITECTURE", "another-net")
    DomainExtractor(train, test, steps=10)
    names = sorted(p.name for p in (cache_dir / "extractors").glob("domain-*.pt"))
    assert len(names) == 2 and any("another-net" in n for n in names) and any(ARCHITECTURE in n for n in names)


@pytest.mark.slow
def test_evaluate_generated_against_floor(blobs):
    train, test = blobs
    good = train.uint8()[:256]
    noise = torch.randint(0, 256, good.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    kept, computed = {}, []

    def memo(compute):  # as evaluation during training keeps them: computed once for the same data
        if "floors" not in kept:
            computed.append(1)
            kept["floors"] = compute()
        return kept["floors"]

    kwargs = dict(extractors=("domain",), domain_steps=STEPS, n_pixel=64, floors=memo)
    real = evaluate(good, train, test, **kwargs)
    fake = evaluate(noise, train, test, **kwargs)
    m, f = real["metrics"], fake["metrics"]
    assert computed == [1] and all(m[k]["floor"] == f[k]["floor"] for k in kept["floors"])
    assert set(kept["floors"]) == set(m) - {"near_copies"}  # near-copies' floor comes with its value
    assert list(m) == [  # the order of metrics.json
        "fd_domain",
        "kid_domain",
        "precision_domain",
        "recall_domain",
        "density_domain",
        "coverage_domain",
        "is_domain",
        "c2st",
        "ssim_best",
        "diversity_ssim",
        "near_copies",
    ]
    assert list(m["kid_domain"]) == ["value", "floor", "value_std"] and list(m["c2st"])[:3] == [
        "value",
        "floor",
        "value_ci95",
    ]
    assert {
        "fd_domain",
        "kid_domain",
        "precision_domain",
        "recall_domain",
        "density_domain",
        "coverage_domain",
        "is_domain",
        "ssim_best",
        "diversity_ssim",
        "near_copies",
        "c2st",
    } <= set(m)
    assert all({"value", "floor"} <= set(v) for v in m.values())
    assert f["fd_domain"]["value"] > 10 * max(m["fd_domain"]["value"], m["fd_domain"]["floor"])
    assert f["precision_domain"]["value"] < 0.1 < 0.8 < m["precision_domain"]["value"]
    assert m["near_copies"]["value"] == 1.0  # training images are exact copies of themselves
    assert f["near_copies"]["value"] == 0.0
    assert f["ssim_best"]["value"] < m["ssim_best"]["value"]
    assert f["c2st"]["value"] > 0.95 and abs(m["c2st"]["floor"] - 0.5) < 0.15
    table = format_table(real)
    assert "fd_domain" in table and "real floor" in table and "domain extractor" in table


@pytest.mark.slow
def test_missing_inception_weights_is_a_message_not_a_crash(blobs, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    train, test = blobs
    with pytest.raises(Unavailable, match="weights-inception-2015-12-05-6726825d.pth"):
        find_weights()
    with pytest.warns(MedganWarning, match="inception metrics unavailable"):
        result = evaluate(train.uint8()[:64], train, test, ("domain", "inception"), domain_steps=10, n_pixel=16)
    assert result["extractors"]["inception"]["available"] is False
    assert "--inception-weights" in result["extractors"]["inception"]["reason"]
    assert "fd_domain" in result["metrics"] and not any(k.endswith("_inception") for k in result["metrics"])
    assert "inception: unavailable" in format_table(result)
    if not result["frd"]["available"]:  # frd-score/pyradiomics absent: said so, nothing else lost
        assert "frd-score" in result["frd"]["reason"] and "frd" not in result["metrics"]


def test_inception_extractor_uses_weights_from_the_hub_cache(tmp_path, monkeypatch):
    """With a weights file in torch's hub cache (random weights here), features and logits come out."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    dummy = tmp_path / "empty.pth"
    torch.save({}, dummy)
    with monkeypatch.context() as m:
        m.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        random_net = FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=str(dummy))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    weights = tmp_path / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    weights.parent.mkdir(parents=True)
    torch.save(random_net.state_dict(), weights)
    extractor = InceptionExtractor()
    features, logits = extractor(torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8))
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)


@pytest.mark.slow
def test_evaluate_cli_on_npz_and_on_a_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "40")
    root = write_medmnist(tmp_path / "data", n=(256, 32, 64))
    run = tmp_path / "run"
    # 4 epochs, evaluation every 5, but a budget over within the first epoch: it ends, evaluated, after epoch 1
    assert (
        main(
            [
                "train",
                "--dataset",
                "pneumoniamnist",
                "--data-root",
                str(root),
                "--epochs",
                "4",
                "--max-minutes",
                "1e-6",
                "--batch-size",
                "64",
                "--eval-every",
                "5",
                "--eval-samples",
                "128",
                "--no-progress",
                "--no-tensorboard",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    evals = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert len(evals) == 1 and evals[0]["epoch"] == 1 and "fd_domain" in evals[0] and "fd_domain_floor" in evals[0]
    assert main(["evaluate", str(run), "-n", "200", "--extractor", "domain"]) == 0
    result = json.loads((run / "metrics.json").read_text())
    assert result["n_generated"] == 200 and result["extractors"]["domain"]["available"]
    assert (run / "metrics_nearest_train.png").exists()
    assert main(["sample", str(run), "-n", "50", "--out", str(tmp_path / "fake.npz")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "fake.npz"), "--dataset", "pneumoniamnist", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "fd_domain" in out and "inception: unavailable" in out
    assert json.loads((tmp_path / "fake.metrics.json").read_text())["n_generated"] == 50
    assert main(["evaluate", str(tmp_path / "fake.npz")]) == 2
    assert "--dataset is needed" in capsys.readouterr().err


@pytest.mark.slow
@needs_shared_data
def test_domain_extractor_on_real_pneumoniamnist():
    root = SHARED_DATA / "medmnist"
    train, test = load_dataset("pneumoniamnist", "train", root=root), load_dataset("pneumoniamnist", "test", root=root)
    _, info = train_domain_net(train, test, steps=150)
    assert info["test_auc"] > 0.85, info


def test_frd_wiring_with_a_stand_in_package(blobs, monkeypatch):
    """frd-score cannot run here (pyradiomics); check medgan hands it two folders of the right PNGs."""
    import sys
    import types
    from pathlib import Path

    from medgan.evaluation.frd import frechet_radiomics_distance

    seen = []

    def compute_frd(paths):
        seen.append([sorted(p.name for p in Path(folder).iterdir()) for folder in paths])
        return 1.5

    fake = types.ModuleType("frd_score")
    fake.frd = types.SimpleNamespace(compute_frd=compute_frd)
    monkeypatch.setitem(sys.modules, "frd_score", fake)
    train, test = blobs
    assert frechet_radiomics_distance(train.uint8()[:3], test.uint8()[:5]) == 1.5
    assert [len(files) for files in seen[0]] == [3, 5] and seen[0][0][0] == "00000.png"


@pytest.mark.slow
def test_c2st_real_halves_near_half_noise_near_one_and_deterministic(blobs):
    from medgan.evaluation.c2st import c2st, wilson_interval

    train, _ = blobs
    images = train.uint8()
    a, b = images[:256], images[256:]
    noise = torch.randint(0, 256, a.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    same = c2st(a, b, steps=60)
    assert abs(same["accuracy"] - 0.5) < 0.1 and same["ci95_low"] < 0.5 < same["ci95_high"] + 0.05
    assert c2st(a, noise, steps=60)["accuracy"] > 0.95
    assert c2st(a, b, steps=60, seed=3) == c2st(a, b, steps=60, seed=3)
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)


@pytest.mark.slow
def test_keep_best_selects_on_the_validation_split_and_sampling_uses_it(tmp_path, monkeypatch):
    from medgan.rundir import load_run

    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "40")
    root = write_medmnist(tmp_path / "data", n=(256, 64, 64))
    run = tmp_path / "run"
    loaded_splits = []
    import medgan.data

    real_load = medgan.data.load_dataset
    monkeypatch.setattr(
        medgan.data,
        "load_dataset",
        lambda name, split, *a, **k: loaded_splits.append(split) or real_load(name, split, *a, **k),
    )
    assert (
        main(
            [
                "train",
                "--dataset",
                "pneumoniamnist",
                "--data-root",
                str(root),
                "--epochs",
                "3",
                "--batch-size",
                "64",
                "--eval-every",
                "1",
                "--eval-share",
                "1",
                "--eval-samples",
                "128",
                "--keep-best",
                "c2st",
                "--no-progress",
                "--no-tensorboard",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    # the trainer's own train split first; the test split only for the final evaluation of the best checkpoint
    assert loaded_splits == ["train", "val", "test"]
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    selects, evals = [r for r in records if r.get("kind") == "select"], [r for r in records if r.get("kind") == "eval"]
    assert [r["epoch"] for r in selects] == [1, 2, 3] and len(evals) == 1
    best = json.loads((run / "run.json").read_text())["best"]
    assert best["value"] == min((r["c2st"] for r in selects), key=lambda v: abs(v - 0.5))
    assert evals[0]["checkpoint"] == "best" and evals[0]["best_epoch"] == best["epoch"]
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert state["epoch"] == best["epoch"]
    generator, _ = load_run(run)  # auto = best
    assert all(torch.equal(a, b) for a, b in zip(generator.state_dict().values(), state["generator"].values()))
    assert main(["sample", str(run), "-n", "8", "--checkpoint", "last", "--out", str(tmp_path / "last.npz")]) == 0


def test_keep_best_needs_evaluations_and_a_known_metric(tmp_path, capsys):
    from medgan.rundir import load_run

    for flags, message in (
        (["--keep-best", "fid"], "keep_best must be one of"),
        (["--keep-best", "c2st", "--eval-every", "0"], "set eval_every >= 1"),
    ):
        assert main(["train", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "x"), *flags]) == 2
        assert message in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--epochs",
                "1",
                "--eval-every",
                "0",
                "--no-progress",
                "--no-tensorboard",
                "--out",
                str(tmp_path / "plain"),
            ]
        )
        == 0
    )
    with pytest.raises(MedganError, match="no checkpoints/best.pt"):
        load_run(tmp_path / "plain", checkpoint="best")


def test_every_catalogue_metric_is_computed_and_c2st_std_is_reported():
    """Adding a metric = a catalogue entry and its computer under the same name: evaluate, metric validation and
    the in-training hook iterate the computers."""
    from types import SimpleNamespace

    from medgan.evaluation.evaluate import METRICS
    from medgan.metrics.catalogue import CATALOGUE

    assert list(METRICS) and set(METRICS) == {m.name for m in CATALOGUE}
    result = {"accuracy": 0.6, "ci95_low": 0.5, "ci95_high": 0.7, "n_test": 100}
    entry = METRICS["c2st"].value(SimpleNamespace(c2st=result))["c2st"]
    assert entry == {"value": 0.6, "value_ci95": [0.5, 0.7]}
    entry = METRICS["c2st"].value(SimpleNamespace(c2st={**result, "std": 0.02}))["c2st"]
    assert entry == {"value": 0.6, "value_ci95": [0.5, 0.7], "value_std": 0.02}
