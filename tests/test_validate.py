import json
import math

import pytest
import torch

from conftest import write_medmnist
from medgan.cli import main
from medgan.evaluation.disturb import LEVELS, STRENGTHS, disturbances, other_source
from medgan.evaluation.metric_validation import MULTIPLE, judge


@pytest.fixture
def images():
    return torch.randint(0, 256, (12, 3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def test_disturbances_are_deterministic_keep_shape_and_level_0_is_identity(images):
    other = torch.zeros_like(images[:5])
    funcs = disturbances(other)
    assert list(funcs) == list(STRENGTHS)
    for name, disturb in funcs.items():
        assert torch.equal(disturb(images, 0, seed=3), images), name
        changes = []
        for level in range(1, LEVELS + 1):
            out = disturb(images, level, seed=3)
            assert out.dtype == torch.uint8 and out.shape == images.shape, name
            assert torch.equal(out, disturb(images, level, seed=3)), name
            changes.append(float((out.float() - images.float()).abs().mean()))
        assert changes[-1] > changes[0] > 0, (name, changes)  # stronger at the top level than at level 1
    with pytest.raises(ValueError, match="level must be"):
        funcs["gaussian_noise"](images, LEVELS + 1)
    with pytest.raises(ValueError, match="uint8"):
        funcs["gaussian_blur"](images.float(), 1)


def test_random_disturbances_depend_on_the_seed(images):
    funcs = disturbances(torch.zeros_like(images))
    for name in ("gaussian_noise", "salt_and_pepper", "rectangles", "mixed_in"):
        assert not torch.equal(funcs[name](images, 2, seed=0), funcs[name](images, 2, seed=1)), name


def test_other_source_matches_channels_and_size():
    description, other = other_source("builtin", 32, 1)  # the built-in set itself: a photo's patches instead
    assert "astronaut" in description and other.shape[1:] == (1, 32, 32) and other.dtype == torch.uint8
    description, other = other_source("pneumoniamnist", 28, 1)
    assert "built-in" in description and other.shape[1:] == (1, 28, 28)


def test_judge_monotone_sensitive_constant_and_directions():
    growing = judge("fd_domain", [1.0, 2.0, 3.0, 5.0, 9.0], spread=0.1)
    assert growing["monotone"] and growing["sensitive"] and growing["level1_over_spread"] == pytest.approx(10)
    within_noise = judge("fd_domain", [1.0, 1.1, 3.0, 5.0, 9.0], spread=0.1)
    assert within_noise["monotone"] and not within_noise["sensitive"]  # 1x the spread < MULTIPLE
    assert MULTIPLE == 2.0
    constant = judge("fd_domain", [1.0] * 5, spread=0.0)
    assert not constant["monotone"] and not constant["sensitive"]
    bumpy = judge("kid_domain", [0.0, 1.0, 3.0, 2.0, 4.0], spread=0.01)  # drops by 1 >> the spread
    assert not bumpy["monotone"] and not bumpy["sensitive"]
    assert judge("precision_domain", [0.9, 0.7, 0.5, 0.2, 0.0], spread=0.01)["sensitive"]  # higher is better
    assert not judge("precision_domain", [0.2, 0.5, 0.6, 0.7, 0.9], spread=0.01)["monotone"]
    # "~floor": moving away from level 0 either way is worse; "-> 0.5": c2st
    assert judge("diversity_ssim", [0.4, 0.3, 0.2, 0.1, 0.0], spread=0.01)["sensitive"]
    assert judge("c2st", [0.5, 0.6, 0.8, 0.9, 1.0], spread=0.02)["sensitive"]
    saturated = judge("c2st", [0.5, 0.98, 1.0, 0.99, 1.0], spread=0.02)  # dips within its noise
    assert saturated["monotone"] and saturated["sensitive"]
    noisy_constant = judge("fd_domain", [1.0, 1.05, 0.98, 1.03, 1.04], spread=0.05)
    assert not noisy_constant["monotone"] and not noisy_constant["sensitive"]
    assert judge("fd_domain", [1.0, 2.0, 3.0, 4.0, 5.0], spread=0.0)["level1_over_spread"] == math.inf


@pytest.mark.slow
def test_validate_metrics_cli_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "20")
    root = write_medmnist(tmp_path / "data", n=(128, 16, 96))
    out = tmp_path / "val"
    assert (
        main(
            [
                "validate-metrics",
                "--dataset",
                "pneumoniamnist",
                "--data-root",
                str(root),
                "--extractor",
                "domain",
                "--seeds",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "| fd_domain |" in capsys.readouterr().out
    result = json.loads((out / "validation.json").read_text())
    assert result["n_disturbed"] == 48 and result["seeds"] == 2 and len(result["undisturbed"]) == 2
    assert {"fd_domain", "kid_domain", "precision_domain", "c2st", "ssim_best", "diversity_ssim"} <= set(
        result["metrics"]
    )
    assert "near_copies" not in result["metrics"] and "near_copies" in result["not_validated"]
    fd = result["metrics"]["fd_domain"]
    assert set(fd["disturbances"]) == set(STRENGTHS) and all(
        len(j["values"]) == LEVELS + 1 for j in fd["disturbances"].values()
    )
    # salt-and-pepper at 20% of the pixels is far from these smooth blobs on any extractor
    assert fd["disturbances"]["salt_and_pepper"]["deviation"][-1] > 10 * fd["spread"]
    markdown = (out / "validation.md").read_text()
    assert "| metric | better | spread |" in markdown and "swirl" in markdown
    assert (out / "validation.png").read_bytes()[:4] == b"\x89PNG"


def test_validate_metrics_cli_errors(tmp_path, capsys):
    assert main(["validate-metrics", "--dataset", "nosuchmnist", "--out", str(tmp_path / "v")]) == 2
    assert "unknown dataset 'nosuchmnist'" in capsys.readouterr().err
    assert main(["validate-metrics", "--dataset", "builtin", "--extractor", "vgg", "--out", str(tmp_path / "v")]) == 2
    assert "unknown extractor" in capsys.readouterr().err
    root = write_medmnist(tmp_path / "data", n=(32, 8, 16))
    assert (
        main(
            ["validate-metrics", "--dataset", "pneumoniamnist", "--data-root", str(root), "--out", str(tmp_path / "v")]
        )
        == 2
    )
    assert "need >= 40 test images" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_mixed_in_images_of_another_size_is_a_clear_error(images):
    mix = disturbances(torch.zeros((4, 1, 28, 28), dtype=torch.uint8))["mixed_in"]
    with pytest.raises(ValueError, match="images to mix in are"):
        mix(images, 1)
