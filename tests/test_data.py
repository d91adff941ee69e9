"""Tests of medgan.data: MedMNIST files (good, re-saved, malformed, missing), large memory-mapped
sizes, image folders and the offline ``builtin`` set. All offline; real files only when present."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from medmnist import INFO

from conftest import SHARED_DATA, needs_shared_data, write_medmnist
from medgan import MedganError, MedganWarning
from medgan.data import builtin, dataset_names, load_dataset, medmnist, to_uint8
from medgan.data import folder as folder_mod

MD5_WARNING = "MD5"


def load_quiet(*args, **kwargs):
    """load_dataset with the expected non-canonical-file warning swallowed (asserted elsewhere)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedganWarning)
        return load_dataset(*args, **kwargs)


def luma(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) uint8 with ITU-R 601 weights (as medgan's convert_channels)."""
    return np.clip(np.rint(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)


@pytest.fixture
def np_load_spy(monkeypatch):
    """Record every np.load call (kwargs and result) made while loading."""
    calls = []
    real = np.load

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    monkeypatch.setattr(np, "load", spy)
    return calls


# --------------------------------------------------------------------------------------------------
# Good MedMNIST files


def test_good_file_loads_with_md5_warning(medmnist_root):
    raw = np.load(medmnist_root / "pneumoniamnist.npz")
    for split, n in zip(("train", "val", "test"), (64, 16, 16)):
        with pytest.warns(MedganWarning, match=MD5_WARNING):
            s = load_dataset("pneumoniamnist", split, root=medmnist_root)
        assert s.images.shape == (n, 1, 28, 28)
        assert s.images.dtype == torch.uint8
        assert s.labels.shape == (n, 1)
        assert s.labels.dtype == torch.int64
        assert len(s) == n and s.shape == (1, 28, 28) and s.size == 28 and s.channels == 1
        assert s.name == "pneumoniamnist" and s.split == split
        assert set(s.labels.flatten().tolist()) == {0, 1}
        assert s.label_names == {"0": "normal", "1": "pneumonia"} and not s.multi_label
        np.testing.assert_array_equal(s.images[:, 0].numpy(), raw[f"{split}_images"])
        np.testing.assert_array_equal(s.labels.numpy(), raw[f"{split}_labels"])


def test_batch_is_float_in_minus1_1_with_exact_known_pixels(tmp_path):
    images = np.full((8, 28, 28), 128, np.uint8)
    images[0, 0, 0], images[0, 0, 1], images[0, 0, 2] = 0, 255, 51
    root = write_medmnist(tmp_path, n=(8, 2, 2), train_images=images)
    s = load_quiet("pneumoniamnist", "train", root=root)
    b = s.batch(torch.arange(8))
    assert b.dtype == torch.float32 and b.shape == (8, 1, 28, 28)
    assert b.min() >= -1.0 and b.max() <= 1.0
    assert b[0, 0, 0, 0].item() == -1.0
    assert b[0, 0, 0, 1].item() == 1.0
    assert b[0, 0, 0, 2].item() == pytest.approx(51 / 127.5 - 1, abs=1e-6)
    assert b[1, 0, 5, 5].item() == pytest.approx(128 / 127.5 - 1, abs=1e-6)
    # index selects the right images; to_uint8 inverts batch exactly
    b2 = s.batch(torch.tensor([3, 0]))
    assert torch.equal(b2[1], b[0]) and torch.equal(b2[0], b[3])
    assert torch.equal(to_uint8(b), s.images)


def test_structured_content_brightness_depends_on_label(medmnist_root):
    s = load_quiet("pneumoniamnist", "train", root=medmnist_root)
    peak = s.images.flatten(1).float().amax(1)
    labels = s.labels[:, 0]
    assert peak[labels == 1].mean() > peak[labels == 0].mean() + 50


def test_labels_1d_are_reshaped_and_multilabel_flag(tmp_path):
    root = write_medmnist(tmp_path, n=(8, 2, 2), train_labels=np.arange(8, dtype=np.uint8) % 2)
    s = load_quiet("pneumoniamnist", "train", root=root)
    assert s.labels.shape == (8, 1) and s.labels.dtype == torch.int64
    assert s.labels[:, 0].tolist() == [0, 1] * 4

    root = write_medmnist(tmp_path / "chest", name="chestmnist", n=(8, 2, 2))
    s = load_quiet("chestmnist", "val", root=root)
    assert s.labels.shape == (2, 14) and s.multi_label


def test_medgan_data_env_is_used_without_root(monkeypatch):
    write_medmnist(Path(os.environ["MEDGAN_DATA"]), n=(8, 2, 2))
    s = load_quiet("pneumoniamnist", "test")
    assert s.images.shape == (2, 1, 28, 28)


def test_dataset_names():
    names = dataset_names()
    assert names[0] == "builtin" and "pneumoniamnist" in names and "breastmnist" in names
    assert not any(n.endswith("3d") for n in names)


# --------------------------------------------------------------------------------------------------
# Channels


def test_channels_1_to_3(medmnist_root):
    s = load_quiet("pneumoniamnist", "val", channels=3, root=medmnist_root)
    assert s.images.shape == (16, 3, 28, 28) and s.channels == 3 and s.shape == (3, 28, 28)
    assert s.images.is_contiguous()
    raw = np.load(medmnist_root / "pneumoniamnist.npz")["val_images"]
    for c in range(3):
        np.testing.assert_array_equal(s.images[:, c].numpy(), raw)
    assert s.batch(torch.arange(4)).shape == (4, 3, 28, 28)


def test_channels_3_native_and_3_to_1_luma(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (8, 28, 28, 3), dtype=np.uint8)
    known = {
        (0, 0): (255, 0, 0),
        (0, 1): (0, 255, 0),
        (0, 2): (0, 0, 255),
        (0, 3): (255, 255, 255),
        (0, 4): (10, 20, 30),
        (0, 5): (0, 0, 0),
    }
    for (y, x), rgb in known.items():
        images[0, y, x] = rgb
    root = write_medmnist(tmp_path, name="bloodmnist", channels=3, n=(8, 2, 2), train_images=images)

    native = load_quiet("bloodmnist", "train", root=root)
    assert native.images.shape == (8, 3, 28, 28) and native.channels == 3
    np.testing.assert_array_equal(native.images.permute(0, 2, 3, 1).numpy(), images)

    grey = load_quiet("bloodmnist", "train", channels=1, root=root)
    assert grey.images.shape == (8, 1, 28, 28) and grey.channels == 1 and grey.images.dtype == torch.uint8
    expected = {(0, 0): 76, (0, 1): 150, (0, 2): 29, (0, 3): 255, (0, 4): 18, (0, 5): 0}
    for (y, x), value in expected.items():
        assert grey.images[0, 0, y, x].item() == value, (y, x)
    diff = np.abs(grey.images[:, 0].numpy().astype(int) - luma(images).astype(int))
    assert diff.max() <= 1  # float32 vs float64 rounding at .5 only


def test_bad_channels_value():
    with pytest.raises(MedganError, match="channels"):
        load_dataset("pneumoniamnist", channels=2)


# --------------------------------------------------------------------------------------------------
# Non-canonical (re-saved / subsetted) files


def test_subsetted_file_warning_lists_differing_counts(tmp_path):
    expected = INFO["breastmnist"]["n_samples"]  # 546 / 78 / 156
    root = write_medmnist(tmp_path, name="breastmnist", n=(50, expected["val"], expected["test"]))
    with pytest.warns(MedganWarning) as record:
        s = load_dataset("breastmnist", "val", root=root)
    assert len(s) == expected["val"]
    message = " ".join(str(w.message) for w in record if issubclass(w.category, MedganWarning))
    assert "MD5" in message and str(root / "breastmnist.npz") in message
    assert "train: 50 images (canonical 546)" in message
    assert "val:" not in message and "test:" not in message


def test_resaved_file_with_all_counts_differing(medmnist_root):
    with pytest.warns(MedganWarning) as record:
        load_dataset("pneumoniamnist", "test", root=medmnist_root)
    message = str(record[0].message)
    for part in (
        "train: 64 images (canonical 4708)",
        "val: 16 images (canonical 524)",
        "test: 16 images (canonical 624)",
    ):
        assert part in message


def test_resaved_file_with_canonical_counts_still_warns(tmp_path):
    n = INFO["breastmnist"]["n_samples"]
    root = write_medmnist(tmp_path, name="breastmnist", n=(n["train"], n["val"], n["test"]))
    with pytest.warns(MedganWarning, match="MD5 mismatch; split sizes match"):
        load_dataset("breastmnist", "test", root=root)


# --------------------------------------------------------------------------------------------------
# Malformed files: always MedganError naming the file and saying what to do


def _not_zip(folder: Path, size: int) -> Path:
    path = folder / medmnist.file_name("pneumoniamnist", size)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return path


def _empty(folder: Path, size: int) -> Path:
    path = folder / medmnist.file_name("pneumoniamnist", size)
    path.write_bytes(b"")
    return path


def _plain_npy(folder: Path, size: int) -> Path:
    path = folder / medmnist.file_name("pneumoniamnist", size)
    with open(path, "wb") as f:
        np.save(f, np.zeros((4, size, size), np.uint8))
    return path


def _truncated(folder: Path, size: int) -> Path:
    write_medmnist(folder, size=size, n=(8, 2, 2))
    path = folder / medmnist.file_name("pneumoniamnist", size)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_member(folder: Path, size: int) -> Path:
    """Zip directory intact, but the compressed bytes of train_images garbled (bad CRC / zlib error)."""
    write_medmnist(folder, size=size, n=(8, 2, 2))
    path = folder / medmnist.file_name("pneumoniamnist", size)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("train_images.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + 60  # inside the member's data
    stop = start + min(400, info.compress_size - 80)
    data[start:stop] = np.random.default_rng(3).integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def _writer(**overrides):
    def make(folder: Path, size: int) -> Path:
        write_medmnist(folder, size=size, n=(8, 2, 2), **overrides)
        return folder / medmnist.file_name("pneumoniamnist", size)

    return make


def _wrong_shape(folder: Path, size: int) -> Path:
    """28-pixel arrays in a file named for ``size`` (64-pixel arrays in the 28 file)."""
    name = medmnist.file_name("pneumoniamnist", size)
    write_medmnist(folder, size=28 if size != 28 else 64, n=(8, 2, 2), filename=name)
    return folder / name


def _object_array(folder: Path, size: int) -> Path:
    images = np.empty(8, dtype=object)
    for i in range(8):
        images[i] = np.zeros((size, size), np.uint8)
    return _writer(train_images=images)(folder, size)


MALFORMED = {
    "not-a-zip": (_not_zip, "not a zip"),
    "empty-file": (_empty, "not a zip"),
    "plain-npy": (_plain_npy, "not a zip"),
    "truncated": (_truncated, "not a zip"),
    "corrupt-member": (_corrupt_member, "could not be read"),
    "missing-images": (_writer(train_images=None), "missing arrays"),
    "missing-labels": (_writer(train_labels=None), "missing arrays"),
    "float32-images": (lambda f, s: _writer(train_images=np.zeros((8, s, s), np.float32))(f, s), "dtype float32"),
    "wrong-shape": (_wrong_shape, "shape"),
    "rgb-for-grey": (lambda f, s: _writer(train_images=np.zeros((8, s, s, 3), np.uint8))(f, s), "shape"),
    "flat-images": (lambda f, s: _writer(train_images=np.zeros((8, s * s), np.uint8))(f, s), "shape"),
    "object-array": (_object_array, "could not be read"),
    "label-count": (_writer(train_labels=np.zeros((7, 1), np.uint8)), "train_labels"),
    "float-labels": (_writer(train_labels=np.zeros((8, 1), np.float32)), "train_labels"),
    "scalar-labels": (_writer(train_labels=np.array(3, np.uint8)), "train_labels"),
}


@pytest.mark.parametrize("size", [28, 128])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_file_gives_medgan_error(tmp_path, case, size):
    make, problem = MALFORMED[case]
    path = make(tmp_path, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedganWarning)
        with pytest.raises(MedganError) as err:
            load_dataset("pneumoniamnist", "train", size=size, root=tmp_path)
    assert type(err.value) is MedganError
    message = str(err.value)
    assert str(path) in message
    assert problem in message
    assert "Delete it and download it again" in message and "--data-root" in message
    url, _ = medmnist._url_md5("pneumoniamnist", size)
    assert url in message


@pytest.mark.parametrize("size", [28, 128])
def test_malformed_other_split_does_not_crash(tmp_path, size):
    """Only the requested split is validated; a broken labels array elsewhere must not crash."""
    root = write_medmnist(tmp_path, size=size, n=(8, 2, 2), val_labels=np.array(3, np.uint8))
    with pytest.warns(MedganWarning, match="val: 0 images"):
        s = load_dataset("pneumoniamnist", "train", size=size, root=root)
    assert len(s) == 8
    with pytest.raises(MedganError, match="val_labels"):
        load_quiet("pneumoniamnist", "val", size=size, root=root)


def test_np_load_never_allows_pickle(tmp_path, np_load_spy):
    write_medmnist(tmp_path, n=(8, 2, 2))
    write_medmnist(tmp_path, size=128, n=(4, 2, 2))
    load_quiet("pneumoniamnist", "train", root=tmp_path)
    load_quiet("pneumoniamnist", "val", size=128, root=tmp_path)
    assert len(np_load_spy) >= 3
    for _, kwargs, _ in np_load_spy:
        assert kwargs.get("allow_pickle") is False


def test_object_array_is_refused_not_unpickled(tmp_path, monkeypatch):
    _object_array(tmp_path, 28)
    import pickle

    def boom(*args, **kwargs):
        raise AssertionError("the file was unpickled")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    with pytest.raises(MedganError, match="could not be read"):
        load_quiet("pneumoniamnist", "train", root=tmp_path)


def test_bad_split_name_medmnist(medmnist_root):
    with pytest.raises(MedganError, match="split"):
        load_quiet("pneumoniamnist", "training", root=medmnist_root)


# --------------------------------------------------------------------------------------------------
# Missing files, unknown names and sizes


@pytest.mark.parametrize("size", [28, 64, 224])
def test_missing_file_offline_names_path_and_url(tmp_path, size):
    with pytest.raises(MedganError) as err:
        load_dataset("pneumoniamnist", "train", size=size, root=tmp_path)
    message = str(err.value)
    url, md5 = medmnist._url_md5("pneumoniamnist", size)
    assert str(tmp_path / medmnist.file_name("pneumoniamnist", size)) in message
    assert url in message and md5 in message and "not found" in message


def test_missing_file_with_download_false(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDGAN_OFFLINE")

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    import torchvision.datasets.utils as tvu

    monkeypatch.setattr(tvu, "download_url", no_network)
    with pytest.raises(MedganError, match="not found"):
        load_dataset("breastmnist", "train", root=tmp_path, download=False)


def test_failed_download_is_medgan_error_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDGAN_OFFLINE")
    import torchvision.datasets.utils as tvu

    def fake_download(url, root, filename, md5):
        Path(root, filename).write_bytes(b"partial")
        raise OSError("network unreachable")

    monkeypatch.setattr(tvu, "download_url", fake_download)
    with pytest.raises(MedganError, match="download failed") as err:
        load_dataset("breastmnist", "train", root=tmp_path)
    assert INFO["breastmnist"]["url"] in str(err.value)
    assert not (tmp_path / "breastmnist.npz").exists()


@pytest.mark.parametrize("name", ["nosuchmnist", "organmnist3d", "PneumoniaMNIST", ""])
def test_unknown_dataset_lists_choices(name):
    with pytest.raises(MedganError) as err:
        load_dataset(name)
    message = str(err.value)
    assert "unknown dataset" in message
    for choice in ("builtin", "folder:PATH", "pneumoniamnist", "breastmnist", "bloodmnist"):
        assert choice in message


@pytest.mark.parametrize("size", [0, 32, 256, 27])
def test_bad_medmnist_size(size):
    with pytest.raises(MedganError, match="size"):
        load_dataset("pneumoniamnist", size=size)


# --------------------------------------------------------------------------------------------------
# Sizes 128 and 224: memory-mapped, converted on the fly


def _memmaps(calls):
    return [out for _, kwargs, out in calls if kwargs.get("mmap_mode")]


@pytest.mark.parametrize("size", [128, 224])
def test_large_sizes_are_memory_mapped(tmp_path, cache_dir, np_load_spy, size):
    root = write_medmnist(tmp_path, size=size, n=(8, 2, 2))
    raw = np.load(root / f"pneumoniamnist_{size}.npz")["train_images"]
    np_load_spy.clear()
    s = load_quiet("pneumoniamnist", "train", size=size, root=root)

    extracted = list((cache_dir / "npy").glob("*train_images.npy"))
    assert len(extracted) == 1
    maps = _memmaps(np_load_spy)
    assert len(maps) == 1 and isinstance(maps[0], np.memmap)
    assert s.images.data_ptr() == maps[0].ctypes.data  # a view on the map, not a copy

    assert s.images.shape == (8, 1, size, size) and s.shape == (1, size, size) and len(s) == 8
    b = s.batch(torch.tensor([1, 5]))
    assert b.shape == (2, 1, size, size) and b.dtype == torch.float32
    assert torch.equal(to_uint8(b)[:, 0], torch.from_numpy(raw[[1, 5]]))
    u = s.uint8()
    assert u.shape == (8, 1, size, size) and u.dtype == torch.uint8
    np.testing.assert_array_equal(u[:, 0].numpy(), raw)

    # 1 -> 3 channels on the fly; the stored tensor stays single-channel
    s3 = load_quiet("pneumoniamnist", "train", size=size, channels=3, root=root)
    assert s3.images.shape == (8, 1, size, size) and s3.shape == (3, size, size)
    assert s3.batch(torch.tensor([0, 2, 4])).shape == (3, 3, size, size)
    assert s3.uint8().shape == (8, 3, size, size)
    # the extracted array is reused, not extracted again
    assert len(list((cache_dir / "npy").glob("*train_images.npy"))) == 1


def test_large_rgb_file_loaded_as_grey_converts_on_the_fly(tmp_path, cache_dir, np_load_spy):
    root = write_medmnist(tmp_path, name="bloodmnist", size=128, channels=3, n=(8, 2, 2))
    raw = np.load(root / "bloodmnist_128.npz")["train_images"]
    np_load_spy.clear()
    s = load_quiet("bloodmnist", "train", size=128, channels=1, root=root)
    maps = _memmaps(np_load_spy)
    assert len(maps) == 1 and s.images.data_ptr() == maps[0].ctypes.data
    assert s.images.shape == (8, 3, 128, 128)  # stored as in the file
    assert s.channels == 1 and s.shape == (1, 128, 128)
    b = s.batch(torch.tensor([0, 7]))
    assert b.shape == (2, 1, 128, 128)
    u = s.uint8()
    assert u.shape == (8, 1, 128, 128) and u.dtype == torch.uint8
    diff = np.abs(u[:, 0].numpy().astype(int) - luma(raw).astype(int))
    assert diff.max() <= 1
    assert torch.equal(to_uint8(b), u[[0, 7]])

    rgb = load_quiet("bloodmnist", "val", size=128, root=root)
    assert rgb.shape == (3, 128, 128)
    np.testing.assert_array_equal(
        rgb.uint8().permute(0, 2, 3, 1).numpy(), np.load(root / "bloodmnist_128.npz")["val_images"]
    )


# --------------------------------------------------------------------------------------------------
# Image folders


def _png(path: Path, size: tuple[int, int], value, mode: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


@pytest.fixture
def kaggle_folder(tmp_path):
    root = tmp_path / "chest_xray"
    for i in range(3):
        _png(root / "train" / "NORMAL" / f"n{i}.png", (40, 30), 50 + i, "L")
        _png(root / "train" / "PNEUMONIA" / f"p{i}.png", (50, 50), (200, 10 + i, 10), "RGB")
    for i in range(2):
        _png(root / "test" / "NORMAL" / f"t{i}.png", (50, 50), 90 + i, "L")
    (root / "train" / "PNEUMONIA" / "bad.png").write_bytes(
        np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    )
    (root / "train" / "NORMAL" / "notes.txt").write_text("not an image")
    return root


def test_folder_kaggle_layout(kaggle_folder):
    with pytest.warns(MedganWarning, match="skipped 1 unreadable"):
        s = load_dataset(f"folder:{kaggle_folder}", "train", size=28)
    assert s.images.shape == (6, 3, 28, 28) and s.images.dtype == torch.uint8  # grey + RGB -> RGB
    assert s.labels.shape == (6, 1) and s.labels.dtype == torch.int64
    assert s.labels[:, 0].tolist() == [0, 0, 0, 1, 1, 1]
    assert s.label_names == {"0": "NORMAL", "1": "PNEUMONIA"}
    # uniform source images stay uniform after resize + crop
    for i in range(3):
        assert torch.all(s.images[i] == 50 + i)
        assert s.images[3 + i, :, 14, 14].tolist() == [200, 10 + i, 10]

    with warnings.catch_warnings():
        warnings.simplefilter("error", MedganWarning)  # no unreadable file in test/
        t = load_dataset(f"folder:{kaggle_folder}", "test", size=28)
    assert t.images.shape == (2, 1, 28, 28)  # all grey -> 1 channel
    assert t.labels[:, 0].tolist() == [0, 0]
    assert torch.all(t.images[1] == 91)


def test_folder_channels_and_size(kaggle_folder):
    with pytest.warns(MedganWarning):
        g = load_dataset(f"folder:{kaggle_folder}", "train", size=16, channels=1)
    assert g.images.shape == (6, 1, 16, 16)
    assert abs(g.images[3, 0, 8, 8].item() - 67) <= 1  # PIL luma of (200, 10, 10)
    t = load_dataset(f"folder:{kaggle_folder}", "test", size=28, channels=3)
    assert t.images.shape == (2, 3, 28, 28)


def test_folder_missing_split_dir(kaggle_folder):
    with pytest.raises(MedganError, match="no val/"):
        load_dataset(f"folder:{kaggle_folder}", "val")


def test_folder_second_load_uses_cache(kaggle_folder, cache_dir, monkeypatch):
    with pytest.warns(MedganWarning, match="skipped 1"):
        first = load_dataset(f"folder:{kaggle_folder}", "train", size=28)
    assert len(list((cache_dir / "folders").glob("*.npz"))) == 1

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(folder_mod, "_decode", no_decode)
    with pytest.warns(MedganWarning, match="skipped 1"):
        second = load_dataset(f"folder:{kaggle_folder}", "train", size=28)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.label_names == first.label_names


def test_folder_cache_invalidated_when_a_file_changes(kaggle_folder):
    with pytest.warns(MedganWarning):
        first = load_dataset(f"folder:{kaggle_folder}", "train", size=28)
    path = kaggle_folder / "train" / "NORMAL" / "n0.png"
    _png(path, (40, 30), 7, "L")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.warns(MedganWarning):
        second = load_dataset(f"folder:{kaggle_folder}", "train", size=28)
    assert torch.all(second.images[0] == 7) and torch.all(first.images[0] == 50)


def _flat_folder(root: Path, per_class: int = 50) -> None:
    for c, cls in enumerate(("benign", "malignant")):
        for i in range(per_class):
            _png(root / cls / f"img{i:03d}.png", (12, 12), c * per_class + i, "L")


def _ids(s) -> list[int]:
    return s.images[:, 0, 4, 4].tolist()


def test_folder_flat_layout_splits_deterministically(tmp_path, monkeypatch):
    root = tmp_path / "flat"
    _flat_folder(root)
    sets = {split: load_dataset(f"folder:{root}", split, size=8) for split in ("train", "val", "test")}
    ids = {split: _ids(s) for split, s in sets.items()}
    assert sum(len(v) for v in ids.values()) == 100
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == list(range(100))  # disjoint, complete
    assert 65 <= len(ids["train"]) <= 92 and len(ids["val"]) >= 2 and len(ids["test"]) >= 2
    for s in sets.values():  # labels follow the class folder
        assert s.labels[:, 0].tolist() == [int(i >= 50) for i in _ids(s)]
        assert s.label_names == {"0": "benign", "1": "malignant"}

    # same split from scratch (fresh cache), and adding files never moves old ones
    monkeypatch.setenv("MEDGAN_CACHE", str(tmp_path / "other-cache"))
    assert _ids(load_dataset(f"folder:{root}", "val", size=8)) == ids["val"]
    for i in range(20):
        _png(root / "benign" / f"new{i:02d}.png", (12, 12), 200 + i, "L")
    for split in ("train", "val", "test"):
        now = _ids(load_dataset(f"folder:{root}", split, size=8))
        assert [i for i in now if i < 200] == ids[split]


def test_folder_images_without_class_folders(tmp_path):
    root = tmp_path / "loose"
    for i in range(30):
        _png(root / f"{i}.png", (10, 10), i, "L")
    s = [load_dataset(f"folder:{root}", split, size=8) for split in ("train", "val", "test")]
    assert sum(len(x) for x in s) == 30
    assert all(set(x.labels.flatten().tolist()) <= {0} for x in s)


def test_folder_empty_and_missing(tmp_path):
    (tmp_path / "empty" / "classA").mkdir(parents=True)
    with pytest.raises(MedganError, match="no images found"):
        load_dataset(f"folder:{tmp_path / 'empty'}", "train")
    with pytest.raises(MedganError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}", "train")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(MedganError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'file.png'}", "train")


def test_folder_all_unreadable(tmp_path):
    root = tmp_path / "broken" / "train" / "A"
    root.mkdir(parents=True)
    for i in range(3):
        (root / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(MedganError, match="none of the 3 images"):
        load_dataset(f"folder:{tmp_path / 'broken'}", "train")


def test_folder_bad_split_name(tmp_path):
    root = tmp_path / "flat"
    _flat_folder(root, per_class=3)
    with pytest.raises(MedganError, match="split"):
        load_dataset(f"folder:{root}", "training")


# --------------------------------------------------------------------------------------------------
# builtin


@pytest.fixture(scope="module")
def builtin_sets():
    return {split: load_dataset("builtin", split) for split in ("train", "val", "test")}


def test_builtin_shapes_and_labels(builtin_sets):
    for split, n in (("train", 4096), ("val", 512), ("test", 512)):
        s = builtin_sets[split]
        assert s.images.shape == (n, 3, 28, 28) and s.images.dtype == torch.uint8
        assert s.labels.shape == (n, 1) and s.labels.dtype == torch.int64
        assert set(s.labels.flatten().tolist()) == {0, 1}
        assert s.shape == (3, 28, 28) and s.name == "builtin" and s.split == split
    frac = builtin_sets["train"].labels.float().mean().item()
    assert 0.3 < frac < 0.7  # threshold is a train median
    assert not torch.equal(builtin_sets["train"].images[:512], builtin_sets["val"].images)
    assert not torch.equal(builtin_sets["val"].images, builtin_sets["test"].images)
    assert builtin_sets["train"].images.float().std() > 10  # real image content, not constant


def test_builtin_splits_share_no_pixel_and_each_spans_the_image():
    n = 512 // builtin.TILE
    grid = [[builtin.split_of_tile(r, c) for c in range(n)] for r in range(n)]
    for line in grid + [list(col) for col in zip(*grid)]:  # every row and every column
        assert line.count("test") == 1 and line.count("val") == 1
    assert builtin.SOURCE_PATCH <= builtin.TILE  # a patch fits inside one tile


def test_builtin_train_and_test_look_alike(builtin_sets):
    """Same tissue mix in train and test (horizontal bands gave test a different one)."""
    train = builtin_sets["train"]
    for held_out in (builtin_sets["val"], builtin_sets["test"]):  # bands: label fraction 0.54 vs 0.19, colour off by 43
        assert abs(train.labels.float().mean() - held_out.labels.float().mean()) < 0.05
        assert (
            train.images.float().mean((0, 2, 3)) - held_out.images.float().mean((0, 2, 3))
        ).abs().max() < 3  # of 255


def test_builtin_is_deterministic(builtin_sets):
    builtin._patches.cache_clear()  # recompute from scratch
    again = load_dataset("builtin", "val")
    assert torch.equal(again.images, builtin_sets["val"].images)
    assert torch.equal(again.labels, builtin_sets["val"].labels)


@pytest.mark.parametrize("size", [64, 128])
def test_builtin_other_sizes(builtin_sets, size):
    s = load_dataset("builtin", "test", size=size)
    assert s.images.shape == (512, 3, size, size)
    assert torch.equal(s.labels, builtin_sets["test"].labels)  # same patches at every size


def test_builtin_grey(builtin_sets):
    g = load_dataset("builtin", "val", channels=1)
    assert g.images.shape == (512, 1, 28, 28) and g.channels == 1
    rgb = builtin_sets["val"].images.permute(0, 2, 3, 1).numpy()
    assert np.abs(g.images[:, 0].numpy().astype(int) - luma(rgb).astype(int)).max() <= 1
    # the cached RGB set is not altered by a grey load
    assert load_dataset("builtin", "val").images.shape == (512, 3, 28, 28)


def test_builtin_bad_split():
    with pytest.raises(MedganError, match="split"):
        load_dataset("builtin", "training")


# --------------------------------------------------------------------------------------------------
# Real MedMNIST files (project machines only)


@needs_shared_data
def test_real_canonical_pneumoniamnist_loads_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedganWarning)
        s = load_dataset("pneumoniamnist", "train", root=SHARED_DATA / "medmnist")
    assert s.images.shape == (4708, 1, 28, 28) and s.images.dtype == torch.uint8
    assert s.labels.shape == (4708, 1) and set(s.labels.flatten().tolist()) == {0, 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedganWarning)
        assert len(load_dataset("pneumoniamnist", "test", root=SHARED_DATA / "medmnist")) == 624


@needs_shared_data
def test_real_breastmnist_64():
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedganWarning)
        s = load_dataset("breastmnist", "train", size=64, root=SHARED_DATA / "medmnist")
    assert s.images.shape == (546, 1, 64, 64)
    assert len(load_dataset("breastmnist", "val", size=64, root=SHARED_DATA / "medmnist")) == 78


@needs_shared_data
def test_real_resaved_copy_loads_with_warning():
    with pytest.warns(MedganWarning, match="3882") as record:
        s = load_dataset("pneumoniamnist", "train", root=SHARED_DATA / "resaved")
    assert "MD5" in str(record[0].message)
    assert s.images.shape == (3882, 1, 28, 28)
