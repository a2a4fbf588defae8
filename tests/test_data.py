"""training.data: folder discovery, decoding and caching, splits, balanced batches."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import training.data as data
from models.preprocess import image_to_uint8, load_image
from tests.tiny_data import write_image_folder
from training.data import (
    DatasetError,
    SkippedImagesWarning,
    balanced_batches,
    class_weights,
    find_images,
    label_from_folder,
    load_dataset,
    stratified_split,
)


def write_image(path: Path, size: tuple[int, int] = (24, 16), seed: int = 0, fmt: str = "PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, fmt)
    return path


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("hotdog", 1), ("hot_dog", 1), ("hot-dog", 1), ("hotdogs", 1), ("hot dog", 1),
        ("Hot_Dog", 1), ("HOTDOG", 1), ("hot__dog", 1),
        ("not_hotdog", 0), ("not_hot_dog", 0), ("nothotdog", 0), ("not-hot-dog", 0),
        ("not hotdog", 0), ("nothotdogs", 0), ("Other", 0), ("NOT_HOT_DOG", 0),
        ("pizza", None), ("hotdogstand", None), ("0", None), ("train", None),
    ],
)  # fmt: skip
def test_label_from_folder(name: str, label: int | None) -> None:
    assert label_from_folder(name) == label


# ------------------------------------------------------------------------------ discovery


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    """tmp/data/{alpha: hot_dog/ not_hot_dog/, beta: Hotdogs/ other/, notes/}"""
    root = tmp_path / "data"
    write_image(root / "alpha" / "hot_dog" / "b.png")
    write_image(root / "alpha" / "hot_dog" / "a.JPG", fmt="JPEG")
    write_image(root / "alpha" / "hot_dog" / "deeper" / "c.webp", fmt="WEBP")
    write_image(root / "alpha" / "not_hot_dog" / "x.png")
    write_image(root / "beta" / "Hotdogs" / "h.bmp", fmt="BMP")
    write_image(root / "beta" / "other" / "o.gif", fmt="GIF")
    (root / "alpha" / "hot_dog" / "readme.txt").write_text("not an image")
    (root / "alpha" / "hot_dog" / "._a.JPG").write_bytes(b"\x00\x05")  # macOS fork
    (root / "alpha" / "hot_dog" / ".thumbs").mkdir()
    write_image(root / "alpha" / "hot_dog" / ".thumbs" / "t.png")
    (root / "notes").mkdir()
    return root


def test_find_images_nested_roots(nested: Path) -> None:
    samples = find_images([nested])
    rel = [(s.path.relative_to(nested).as_posix(), s.label, s.source) for s in samples]
    assert rel == [
        ("alpha/hot_dog/a.JPG", 1, "alpha"),
        ("alpha/hot_dog/b.png", 1, "alpha"),
        ("alpha/hot_dog/deeper/c.webp", 1, "alpha"),
        ("alpha/not_hot_dog/x.png", 0, "alpha"),
        ("beta/Hotdogs/h.bmp", 1, "beta"),
        ("beta/other/o.gif", 0, "beta"),
    ]


def test_find_images_direct_root_and_dedup(nested: Path) -> None:
    direct = find_images(nested / "beta")
    assert [s.source for s in direct] == ["beta", "beta"]
    both = find_images([nested, nested / "alpha", str(nested / "beta")])
    assert len(both) == 6


def test_find_images_errors(tmp_path: Path, nested: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        find_images(tmp_path / "missing")
    with pytest.raises(DatasetError, match="not a folder"):
        find_images(nested / "alpha" / "hot_dog" / "b.png")
    with pytest.raises(DatasetError, match="no class folders"):
        find_images(nested / "notes")
    with pytest.raises(DatasetError, match="is a class folder"):
        find_images(nested / "alpha" / "hot_dog")
    (tmp_path / "empty" / "hotdog").mkdir(parents=True)
    (tmp_path / "empty" / "not_hotdog").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        find_images(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no dataset folders"):
        find_images([])
    for err in (DatasetError("x"),):
        assert isinstance(err, ValueError)


# ----------------------------------------------------------------------------- decoding


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    # Drafted differently for 32 (1/8 scale) and for 40 (1/4 scale).
    write_image(root / "hot_dog" / "big.jpg", (384, 256), seed=1, fmt="JPEG")
    write_image(root / "hot_dog" / "mid.jpg", (150, 100), seed=2, fmt="JPEG")
    write_image(root / "hot_dog" / "tall.png", (20, 90), seed=3)
    write_image(root / "not_hot_dog" / "tiny.png", (1, 1), seed=4)
    write_image(root / "not_hot_dog" / "rgba.png", (40, 40), seed=5)
    (root / "not_hot_dog" / "empty.jpg").write_bytes(b"")
    (root / "not_hot_dog" / "text.jpg").write_text("hello")
    return root


def test_load_dataset_arrays_and_one_warning(photos: Path) -> None:
    with pytest.warns(SkippedImagesWarning) as record:
        ds = load_dataset(photos, size=32, cache=False, workers=1)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("skipped 2 unreadable images (e.g. ")
    assert "empty.jpg: empty file" in message
    assert len(ds) == 5 and ds.size == 32 and ds.cache_size == 40
    assert ds.images.shape == (5, 40, 40, 3) and ds.images.dtype == np.uint8
    assert ds.eval_images.shape == (5, 32, 32, 3) and ds.eval_images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [1, 1, 1, 0, 0]
    assert ds.sources.tolist() == ["photos"] * 5
    assert [Path(p).name for p in ds.paths] == [
        "big.jpg",
        "mid.jpg",
        "tall.png",
        "rgba.png",
        "tiny.png",
    ]
    assert len(ds.skipped) == 2
    for i, path in enumerate(ds.paths):
        # Validation pixels are exactly the app's; training squares are the same crop, larger.
        served = image_to_uint8(load_image(path, draft_size=32), 32)
        np.testing.assert_array_equal(ds.eval_images[i], served)
        stored = image_to_uint8(load_image(path, draft_size=40), 40)
        np.testing.assert_array_equal(ds.images[i], stored)
    # The second decode for big JPEGs matters: one decode for both would differ.
    shortcut = image_to_uint8(load_image(ds.paths[0], draft_size=40), 32)
    assert not np.array_equal(shortcut, ds.eval_images[0])
    assert ds.summary() == {"n": 5, "sources": {"photos": {"not_hotdog": 2, "hotdog": 3}}}


def test_cache_size_equal_to_size_decodes_once(photos: Path) -> None:
    with pytest.warns(SkippedImagesWarning):
        ds = load_dataset(photos, size=16, cache_size=16, cache=False, workers=1)
    assert ds.images is ds.eval_images and ds.images.shape == (5, 16, 16, 3)
    with pytest.raises(ValueError, match="cache_size"):
        load_dataset(photos, size=16, cache_size=8, cache=False)


def test_all_unreadable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "d" / "hotdog").mkdir(parents=True)
    (tmp_path / "d" / "hotdog" / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="could be read"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_dataset(tmp_path / "d", cache=False)


def test_cache_round_trip(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_dir = tmp_path / "cache"
    calls: list[tuple[int, int]] = []
    with pytest.warns(SkippedImagesWarning):
        first = load_dataset(
            photos, 32, cache_dir=cache_dir, workers=1, progress=lambda *a: calls.append(a)
        )
    assert calls[-1] == (7, 7)
    files = list(cache_dir.glob("dataset-*.npz"))
    assert len(files) == 1 and not list(cache_dir.glob(".tmp-*"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(data, "_decode_all", no_decoding)
    with pytest.warns(SkippedImagesWarning, match="skipped 2"):  # still reported when cached
        again = load_dataset(photos, 32, cache_dir=cache_dir)
    for name in ("images", "eval_images", "labels", "sources", "paths"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert again.skipped == first.skipped and again.labels.dtype == np.int64
    monkeypatch.undo()

    # A changed file (new mtime and size) means a new key and a fresh decode.
    changed = photos / "hot_dog" / "tall.png"
    write_image(changed, (30, 90), seed=9)
    os.utime(changed, ns=(1, 1))
    with pytest.warns(SkippedImagesWarning):
        load_dataset(photos, 32, cache_dir=cache_dir, workers=1)
    assert len(list(cache_dir.glob("dataset-*.npz"))) == 2

    # A damaged cache file is ignored and rewritten, not a crash.
    for f in cache_dir.glob("dataset-*.npz"):
        f.write_bytes(b"garbage")
    with pytest.warns(SkippedImagesWarning):
        load_dataset(photos, 32, cache_dir=cache_dir, workers=1)


def test_process_pool_matches_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "many"
    for i in range(70):
        write_image(root / ("hotdog" if i % 3 else "nothotdog") / f"{i:03}.png", (20 + i, 18), i)
    pools = []

    class Spy(data.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(data, "ProcessPoolExecutor", Spy)
    serial = load_dataset(root, 16, cache=False, workers=1)
    assert pools == []
    pooled = load_dataset(root, 16, cache=False, workers=2)
    assert pools == [{"max_workers": 2, "initializer": data._ignore_interrupts}]
    np.testing.assert_array_equal(serial.images, pooled.images)
    np.testing.assert_array_equal(serial.eval_images, pooled.eval_images)
    np.testing.assert_array_equal(serial.labels, pooled.labels)


def test_subset() -> None:
    ds = data.Dataset(
        images=np.arange(4 * 5 * 5 * 3, dtype=np.uint8).reshape(4, 5, 5, 3),
        eval_images=np.zeros((4, 4, 4, 3), np.uint8),
        labels=np.array([0, 1, 0, 1]),
        sources=np.array(["a", "a", "b", "b"]),
        paths=np.array(["p0", "p1", "p2", "p3"]),
    )
    sub = ds.subset([3, 1])
    assert sub.paths.tolist() == ["p3", "p1"] and len(sub) == 2 and sub.size == 4
    np.testing.assert_array_equal(sub.images[0], ds.images[3])


# ----------------------------------------------------------------------------- splitting


def make_labels() -> tuple[np.ndarray, np.ndarray]:
    labels = np.array([0] * 600 + [1] * 150 + [0] * 40 + [1] * 9 + [1] * 3)
    sources = np.array(["food"] * 750 + ["photos"] * 49 + ["seefood"] * 3)
    return labels, sources


def test_stratified_split_is_stratified_and_deterministic() -> None:
    labels, _ = make_labels()
    train, val = stratified_split(labels, 0.2, seed=3)
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert len(np.intersect1d(train, val)) == 0
    assert abs(labels[val].mean() - labels.mean()) < 0.01
    again = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    other = stratified_split(labels, 0.2, seed=4)
    assert not np.array_equal(other[1], val)


def test_stratified_split_by_source_represents_every_source() -> None:
    labels, sources = make_labels()
    train, val = stratified_split(labels, 0.1, seed=0, groups=sources)
    for source in np.unique(sources):
        for label in np.unique(labels[sources == source]):
            stratum = (sources == source) & (labels == label)
            assert stratum[val].sum() >= 1 and stratum[train].sum() >= 1, (source, label)
    assert (sources[val] == "food").sum() == 75


def test_stratified_split_edges() -> None:
    train, val = stratified_split([0, 1, 0, 1], 0.0, seed=0)
    assert len(val) == 0 and len(train) == 4
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split([0, 1], 1.0)
    with pytest.raises(ValueError, match="same length"):
        stratified_split([0, 1], 0.5, groups=["a"])


def test_class_weights() -> None:
    labels = np.array([0] * 75 + [1] * 25)
    w = class_weights(labels)
    assert w.shape == (2,) and w.dtype == np.float32
    np.testing.assert_allclose(w, [100 / 150, 100 / 50])
    assert w[labels].mean() == pytest.approx(1.0)  # the loss keeps its scale
    assert (w[0] * 75) == pytest.approx(w[1] * 25)  # classes contribute equally
    with pytest.raises(DatasetError, match="both classes"):
        class_weights([1, 1, 1])


def test_balanced_batches() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    batches = list(balanced_batches(labels, 16, np.random.default_rng(0)))
    assert len(batches) == 7  # ceil(100 / 16), the steps of a plain epoch
    for b in batches:
        assert b.dtype == np.int64 and b.shape == (16,)
        assert labels[b].sum() == 8
    positives = np.concatenate([b[labels[b] == 1] for b in batches])
    # Oversampled in rounds without replacement: 56 draws of 10 images, each drawn 5 or 6 times.
    assert set(np.bincount(positives - 90).tolist()) == {5, 6}
    negatives = np.concatenate([b[labels[b] == 0] for b in batches])
    assert len(np.unique(negatives)) == len(negatives) == 56  # majority never repeats

    again = list(balanced_batches(labels, 16, np.random.default_rng(0)))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    different = list(balanced_batches(labels, 16, np.random.default_rng(1)))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, different, strict=True))


def test_balanced_batches_odd_size_and_errors() -> None:
    labels = np.array([0] * 30 + [1] * 30)
    batches = list(balanced_batches(labels, 5, np.random.default_rng(0), num_batches=4))
    assert [int(labels[b].sum()) for b in batches] == [2, 3, 2, 3]
    with pytest.raises(DatasetError, match="both classes"):
        balanced_batches(np.zeros(10, int), 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="batch_size"):
        balanced_batches(labels, 1, np.random.default_rng(0))


def test_balanced_batches_group_power_lifts_small_groups() -> None:
    labels = np.array([1] * 100 + [0] * 300 + [1] * 10 + [0] * 10)
    groups = np.array(["big"] * 400 + ["small"] * 20)
    natural = np.concatenate(list(balanced_batches(labels, 64, np.random.default_rng(0))))
    lifted = np.concatenate(
        list(balanced_batches(labels, 64, np.random.default_rng(0), groups=groups, group_power=0.5))
    )
    equal = np.concatenate(
        list(balanced_batches(labels, 64, np.random.default_rng(0), groups=groups, group_power=0))
    )
    share = [float(np.mean(groups[b] == "small")) for b in (natural, lifted, equal)]
    assert share[0] < share[1] < share[2]
    assert abs(share[2] - 0.5) < 0.1  # power 0: each group gets an equal share per class
    for b in (lifted, equal):
        assert np.mean(labels[b]) == 0.5  # still half hotdog


def test_a_fifo_in_a_training_folder_is_skipped_not_waited_on(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", n_per_class=3, side=12)
    os.mkfifo(root / "hot_dog" / "stuck.jpg")
    with pytest.warns(SkippedImagesWarning, match="not a regular file"):
        data = load_dataset(root, size=8, cache=False, workers=1)
    assert len(data) == 6 and len(data.skipped) == 1


def test_file_names_that_are_not_utf8_are_read_and_hashed(tmp_path: Path) -> None:
    """A name of arbitrary bytes (a camera's, another system's) is a photo like any other:
    decoded, cached and fingerprinted, not a UnicodeEncodeError."""
    import os

    from PIL import Image

    for label in ("hot_dog", "not_hot_dog"):
        folder = tmp_path / label
        folder.mkdir()
        for i in range(2):
            name = os.fsdecode(b"photo-\xff\xfe" + bytes([48 + i]) + b".png")
            Image.new("RGB", (20, 20), (40 * i, 90, 200)).save(folder / name)
    data = load_dataset(tmp_path, size=16, cache_dir=tmp_path / "cache")
    assert len(data) == 4 and len(data.fingerprint()) == 64
    again = load_dataset(tmp_path, size=16, cache_dir=tmp_path / "cache")  # from the cache
    assert again.fingerprint() == data.fingerprint()


def test_a_photo_replaced_with_same_size_and_time_stamp_is_seen(tmp_path: Path) -> None:
    """The decode cache and the resume check go by content: a photo swapped for another of
    the same byte count, with its time stamp put back, is decoded again."""
    import os

    from PIL import Image

    root = tmp_path / "photos"
    for label in ("hot_dog", "not_hot_dog"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 20), (200, 40 * i, 90)).save(root / label / f"{i}.bmp")
    cache = tmp_path / "cache"
    first = load_dataset(root, size=16, cache_dir=cache)
    path = root / "hot_dog" / "0.bmp"
    st = os.stat(path)
    Image.new("RGB", (20, 20), (10, 250, 10)).save(path)  # BMP: the same byte count
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    second = load_dataset(root, size=16, cache_dir=cache)
    assert second.fingerprint() != first.fingerprint()
    changed = [i for i, p in enumerate(second.paths) if p.endswith("hot_dog/0.bmp")]
    assert second.eval_images[changed[0]].mean(axis=(0, 1))[1] > 200  # the new, green pixels
