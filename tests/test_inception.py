"""The Inception weights: found where they are, else downloaded into torch hub's cache, atomically and hash-checked.

Nothing real is downloaded: the URL is a local ``file://`` stand-in whose SHA-256 the test computes."""

from __future__ import annotations

import hashlib

import pytest

from medgan.evaluation import inception
from medgan.evaluation.inception import Unavailable, find_weights, hub_path


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch hub's cache under tmp_path ($TORCH_HOME), no $MEDGAN_INCEPTION_WEIGHTS; returns the stand-in file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("MEDGAN_INCEPTION_WEIGHTS", raising=False)
    source = tmp_path / "served" / inception.WEIGHTS_FILE
    source.parent.mkdir()
    source.write_bytes(b"not really inception weights\n" * 1000)
    monkeypatch.setenv("MEDGAN_INCEPTION_URL", source.as_uri())
    return source


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name != inception.WEIGHTS_FILE] if folder.exists() else []


def test_hub_path_honours_torch_home(hub, tmp_path):
    assert hub_path() == tmp_path / "torch" / "hub" / "checkpoints" / inception.WEIGHTS_FILE


def test_download_into_the_hub_cache_when_allowed(hub, monkeypatch):
    monkeypatch.delenv("MEDGAN_OFFLINE", raising=False)
    monkeypatch.setattr(inception, "WEIGHTS_SHA256_PREFIX", hashlib.sha256(hub.read_bytes()).hexdigest())
    path = find_weights()
    assert path == hub_path() and path.read_bytes() == hub.read_bytes()
    assert _no_leftovers(path.parent) == []  # the temporary file was renamed, nothing else left
    hub.unlink()  # found in the cache from now on: no second download
    assert find_weights() == path


def test_the_hash_prefix_in_the_file_name_is_enough(hub, monkeypatch):
    monkeypatch.delenv("MEDGAN_OFFLINE", raising=False)
    monkeypatch.setattr(inception, "WEIGHTS_SHA256_PREFIX", hashlib.sha256(hub.read_bytes()).hexdigest()[:8])
    assert find_weights().is_file()


def test_a_wrong_hash_is_an_error_and_leaves_no_file(hub, monkeypatch):
    monkeypatch.delenv("MEDGAN_OFFLINE", raising=False)
    monkeypatch.setattr(inception, "WEIGHTS_SHA256_PREFIX", "0" * 64)
    with pytest.raises(Unavailable, match="SHA-256") as e:
        find_weights()
    assert "\n" not in str(e.value)
    assert not hub_path().exists() and _no_leftovers(hub_path().parent) == []


def test_offline_forbids_the_download(hub, monkeypatch):
    monkeypatch.setenv("MEDGAN_OFFLINE", "1")
    monkeypatch.setattr(inception, "WEIGHTS_SHA256_PREFIX", hashlib.sha256(hub.read_bytes()).hexdigest())
    with pytest.raises(Unavailable, match="MEDGAN_OFFLINE") as e:
        find_weights()
    assert "\n" not in str(e.value) and str(hub_path()) in str(e.value)
    assert not hub_path().exists()


def test_a_failed_download_is_one_clear_line(hub, monkeypatch, tmp_path):
    monkeypatch.delenv("MEDGAN_OFFLINE", raising=False)
    monkeypatch.setenv("MEDGAN_INCEPTION_URL", (tmp_path / "nowhere.pth").as_uri())
    with pytest.raises(Unavailable, match="download failed") as e:
        find_weights()
    assert "\n" not in str(e.value) and "--inception-weights" in str(e.value)
    assert not hub_path().exists() and _no_leftovers(hub_path().parent) == []


def test_a_given_file_wins_and_nothing_is_downloaded(hub, monkeypatch, tmp_path):
    monkeypatch.delenv("MEDGAN_OFFLINE", raising=False)
    mine = tmp_path / "mine.pth"
    mine.write_bytes(b"x")
    assert find_weights(mine) == mine
    monkeypatch.setenv("MEDGAN_INCEPTION_WEIGHTS", str(mine))
    assert find_weights() == mine
    assert not hub_path().exists()


def test_the_default_url_is_torch_fidelitys():
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    assert inception.WEIGHTS_URL == fidelity.URL_INCEPTION_V3
    assert inception.WEIGHTS_FILE.rsplit("-", 1)[1].split(".")[0] == inception.WEIGHTS_SHA256_PREFIX
