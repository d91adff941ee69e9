"""medgan from Python (medgan.api): train, load, sample, show, evaluate, compare; the example notebook runs."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medgan import MedganError, api
from medgan.sample import write_images

TINY = {"dataset": "builtin", "model": "dcgan", "width": 8, "batch_size": 32, "epochs": 1, "eval_every": 0}
NOTEBOOK = Path(__file__).parents[1] / "examples" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return api.train(**TINY, out=str(tmp_path_factory.mktemp("api") / "run"), progress=False, tensorboard=False)


def test_train_returns_a_run_that_samples_and_draws(run):
    assert isinstance(run, api.Run) and run.config.model == "dcgan" and "dcgan-lsgan" in repr(run)
    images = run.sample(10, seed=3)
    assert images.shape == (10, run.config.channels, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(images, run.sample(10, seed=3)) and not torch.equal(images, run.sample(10, seed=4))
    picture = run.grid(16)
    assert isinstance(picture, Image.Image) and picture.size == (4 * 28 + 5 * 2, 4 * 28 + 5 * 2)
    assert [r["epoch"] for r in run.log("epoch")] == [1]
    assert torch.equal(api.load(run.path).sample(4), run.sample(4))


def test_train_with_a_list_of_seeds_trains_a_pack(tmp_path):
    runs = api.train(**TINY, seed=[0, 1], out=str(tmp_path / "pack"), progress=False, tensorboard=False)
    assert [r.path.name for r in runs] == ["s0", "s1"] and [r.config.seed for r in runs] == [0, 1]
    assert not torch.equal(runs[0].sample(4), runs[1].sample(4))


def test_keyword_settings_are_checked_like_flags(tmp_path):
    with pytest.raises(MedganError, match="model"):
        api.train(dataset="builtin", model="nope", out=str(tmp_path / "x"))
    with pytest.raises(MedganError, match="not a medgan run"):
        api.load(tmp_path)


def test_evaluate_takes_a_run_an_npz_a_tensor_and_an_array(run, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "20")
    images = run.sample(64)
    of_run = api.evaluate(run, n=64, extractors=())
    of_tensor = api.evaluate(images, dataset="builtin", extractors=())
    of_array = api.evaluate(images.numpy(), dataset="builtin", extractors=())
    of_file = api.evaluate(write_images(images, tmp_path / "fake.npz"), dataset="builtin", extractors=())
    for scores in (of_tensor, of_array, of_file):
        assert scores["metrics"]["diversity_ssim"] == of_run["metrics"]["diversity_ssim"]
    grey = api.evaluate(images[:, 0].numpy(), dataset="builtin", extractors=())  # (N, H, W): to the set's channels
    assert grey["n_generated"] == 64 and grey["shape"] == [3, 28, 28]
    html = of_run._repr_html_()
    assert "real floor" in html and "diversity_ssim" in html and "diversity_ssim" in str(of_run)
    with pytest.raises(MedganError, match="dataset is needed"):
        api.evaluate(images)
    with pytest.raises(MedganError, match="uint8"):
        api.evaluate(np.zeros((4, 28, 28), np.float32), dataset="builtin")


@pytest.mark.slow
def test_the_example_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    """Every code cell of examples/quickstart.ipynb, in order, in one namespace (as Jupyter's kernel would)."""
    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "20")
    monkeypatch.chdir(tmp_path)
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 5
    namespace: dict = {}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[cell {i}]", "exec"), namespace)
    assert namespace["images"].shape[0] == 64 and isinstance(namespace["run"].grid(4), Image.Image)
    assert {r["status"] for r in namespace["results"]["runs"]} == {"finished"}
    assert (tmp_path / "runs" / "notebook-study" / "report.html").exists() and os.listdir(tmp_path / "runs")
