"""fastgen.data: sources, preprocessing, corrupt-file handling, resumable batches, image grids."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastgen.data import BatchIterator, DatasetInfo, ImageDataset, load_dataset, save_image_grid
from fastgen.data.sources import FASHION_MNIST_DIR
from fastgen.errors import FastgenError

RED, GREY = (255, 0, 0), 128


def write_image_folder(root: Path) -> Path:
    """Three good images (RGB PNG 10×20, grey PNG, JPEG in a subfolder), a corrupt PNG and a text file."""
    Image.new("RGB", (20, 10), RED).save(root / "a_red_wide.png")
    Image.new("L", (12, 12), GREY).save(root / "b_grey.png")
    (root / "nested").mkdir()
    Image.new("RGB", (16, 16), (0, 0, 255)).save(root / "nested" / "c_blue.jpg", quality=95)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    (root / "notes.txt").write_text("not an image")
    return root


def index_dataset(size: int) -> ImageDataset:
    """Labels are the image indices, so a batch's labels show exactly which images it holds."""
    return ImageDataset(torch.zeros(size, 1, 2, 2), torch.arange(size), DatasetInfo("indices"))


def take(iterator: BatchIterator, count: int) -> list[list[int]]:
    return [next(iterator)[1].tolist() for _ in range(count)]


def test_digits_shapes_range_labels_and_channels():
    grey = load_dataset("digits", resolution=8, channels=1)
    assert grey.images.shape == (1797, 1, 8, 8) and grey.images.dtype == torch.float32
    assert grey.images.min() == -1 and grey.images.max() == 1  # digits span 0..16, the full range
    assert grey.labels.dtype == torch.int64 and grey.num_classes == 10 and len(grey) == 1797
    rgb = load_dataset("digits", resolution=8, channels=3)
    assert rgb.images.shape == (1797, 3, 8, 8)
    assert torch.equal(rgb.images[:, 0], grey.images[:, 0]) and torch.equal(rgb.images[:, 2], grey.images[:, 0])


@pytest.mark.parametrize("fit", ["resize", "pad", "resize_pad"])
def test_fit_gives_the_resolution(fit):
    dataset = load_dataset("digits", resolution=12, channels=1, fit=fit)
    assert dataset.images.shape == (1797, 1, 12, 12)
    assert -1 <= dataset.images.min() and dataset.images.max() <= 1


def test_pad_centres_the_unscaled_image_on_black():
    original = load_dataset("digits", resolution=8, channels=1).images
    padded = load_dataset("digits", resolution=12, channels=1, fit="pad").images
    assert torch.equal(padded[:, :, 2:10, 2:10], original)
    border = torch.ones(12, 12, dtype=torch.bool)
    border[2:10, 2:10] = False
    assert (padded[:, :, border] == -1).all()


def test_folder_loads_decodes_and_counts_corrupt_files(tmp_path, caplog):
    root = write_image_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fastgen.data"):
        dataset = load_dataset("folder", resolution=16, channels=3, path=str(root))
    assert dataset.images.shape == (3, 3, 16, 16) and dataset.labels is None
    assert dataset.info.skipped_corrupt == 1 and dataset.info.corrupt_files == (str(root / "broken.png"),)
    assert "skipped 1 corrupt" in caplog.text and "broken.png" in caplog.text
    red, grey, blue = dataset.images  # sorted by path: a_red_wide, b_grey, nested/c_blue
    assert torch.allclose(red[:, 8, 8], torch.tensor([1.0, -1.0, -1.0]), atol=1e-5)
    assert torch.allclose(grey, torch.full_like(grey, GREY / 127.5 - 1), atol=1e-5)  # grey → RGB, all equal
    assert blue[2].mean() > 0.9 and blue[0].mean() < -0.9  # JPEG is lossy: only roughly pure blue


def test_folder_order_is_sorted_by_path(tmp_path):
    for index in reversed(range(20)):  # written in reverse, so directory order alone would not be sorted
        Image.new("L", (4, 4), index * 10).save(tmp_path / f"{index:02d}.png")
    values = load_dataset("folder", 4, 1, path=tmp_path).images[:, 0, 0, 0]
    assert torch.allclose(values, torch.arange(20) * 10 / 127.5 - 1, atol=1e-5)


def test_folder_resize_pad_keeps_aspect_and_rgb_to_grey(tmp_path):
    root = write_image_folder(tmp_path)
    dataset = load_dataset("folder", resolution=16, channels=1, fit="resize_pad", path=root)
    red = dataset.images[0, 0]  # 10×20 scaled to 8×16, centred with 4 black rows above and below
    assert (red[:4] == -1).all() and (red[12:] == -1).all()
    assert torch.allclose(red[4:12], torch.full((8, 16), 0.299 * 2 - 1), atol=1e-5)  # luma of pure red


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_npz_layouts_and_dtypes_load_alike(tmp_path, layout, dtype):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 6, 7, 1 if layout == "nhw" else 3), dtype=np.uint8)  # NHWC
    stored = {"nhwc": pixels, "nchw": pixels.transpose(0, 3, 1, 2), "nhw": pixels[..., 0]}[layout]
    stored = stored if dtype == "uint8" else stored.astype(np.float32) / 255
    np.savez(tmp_path / "set.npz", pictures=stored, classes=np.arange(5))
    dataset = load_dataset("npz", 8, 3, fit="pad", path=tmp_path / "set.npz", key="pictures", labels_key="classes")
    assert dataset.images.shape == (5, 3, 8, 8) and dataset.labels.tolist() == [0, 1, 2, 3, 4]
    expected = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.allclose(dataset.images[:, :, 1:7, :7], expected.expand(-1, 3, -1, -1), atol=1e-6)


def test_digits_train_and_test_splits_partition_all_images_by_class():
    everything = load_dataset("digits", resolution=8, channels=1)
    train = load_dataset("digits", resolution=8, channels=1, split="train")
    test = load_dataset("digits", resolution=8, channels=1, split="test")
    assert len(train) + len(test) == len(everything)
    assert torch.equal(torch.bincount(test.labels), torch.bincount(everything.labels) // 5)  # a fifth of each class
    for label in range(10):  # the test images of a class are its 5th, 10th … image, in order
        assert torch.equal(test.images[test.labels == label], everything.images[everything.labels == label][4::5])
    merged = torch.cat([train.images, test.images]).flatten(1)
    assert len(torch.unique(merged, dim=0)) == len(torch.unique(everything.images.flatten(1), dim=0))


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
@pytest.mark.parametrize(("split", "count"), [("train", 60000), ("test", 10000)])
def test_fashion_mnist_splits(split, count):
    dataset = load_dataset("fashion-mnist", resolution=28, channels=1, split=split)
    assert dataset.images.shape == (count, 1, 28, 28)
    assert dataset.images.min() == -1 and dataset.images.max() == 1
    assert torch.equal(torch.bincount(dataset.labels), torch.full((10,), count // 10))


def test_fashion_mnist_missing_tells_how_to_install(tmp_path):
    with pytest.raises(FastgenError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", 28, 1, root=tmp_path)


def test_iterator_is_deterministic_by_seed():
    def batches(seed: int) -> list[list[int]]:
        return take(BatchIterator(index_dataset(50), batch_size=8, seed=seed), 20)

    assert batches(3) == batches(3)
    assert batches(3)[0] != batches(4)[0] and batches(3)[7] != batches(4)[7]


@pytest.mark.parametrize(("drop_last", "batches", "last_size"), [(False, 4, 1), (True, 3, 3)])
def test_iterator_covers_each_epoch_once(drop_last, batches, last_size):
    iterator = BatchIterator(index_dataset(10), batch_size=3, seed=1, drop_last=drop_last)
    assert iterator.batches_per_epoch == batches
    epochs = [take(iterator, batches) for _ in range(3)]
    for epoch in epochs:
        seen = [index for batch in epoch for index in batch]
        assert len(epoch[-1]) == last_size
        assert len(seen) == len(set(seen)) == 3 * (batches - 1) + last_size and set(seen) <= set(range(10))
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch
    assert iterator.epoch == 3 and iterator.position == 0


def test_epoch_order_depends_only_on_seed_and_epoch():
    walked = BatchIterator(index_dataset(10), batch_size=5, seed=7)
    take(walked, 10)  # through epochs 0..4
    fresh = BatchIterator(index_dataset(10), batch_size=5, seed=7)
    assert sum(take(walked, 2), []) == fresh.permutation(5).tolist()


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("stop_after", [0, 2, 4, 9])
def test_resume_from_state_dict_sees_the_same_batches(stop_after, drop_last):
    uninterrupted = take(BatchIterator(index_dataset(10), 3, seed=5, drop_last=drop_last), 15)
    first = BatchIterator(index_dataset(10), 3, seed=5, drop_last=drop_last)
    before = take(first, stop_after)
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint would store it
    resumed = BatchIterator(index_dataset(10), 3, seed=5, drop_last=drop_last)
    resumed.load_state_dict(state)
    assert before + take(resumed, 15 - stop_after) == uninterrupted


def test_save_image_grid_writes_png_of_expected_size(tmp_path):
    images = torch.ones(5, 3, 8, 8)
    path = save_image_grid(images, tmp_path / "out" / "grid.png", nrow=3, padding=2)
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        assert picture.size == (3 * 10 + 2, 2 * 10 + 2)  # 3 columns, 2 rows of 8 px + 2 px padding
        grid = np.asarray(picture)
    assert (grid[2:10, 2:10] == 255).all() and (grid[12:20, 12:20] == 255).all()  # cells 1 and 5
    assert (grid[:2] == 0).all() and (grid[:, :2] == 0).all() and (grid[10:12] == 0).all()  # padding
    assert (grid[12:20, 22:30] == 0).all() and (grid == 255).sum() == 5 * 8 * 8 * 3  # 6th cell empty
    assert [file.name for file in path.parent.iterdir()] == ["grid.png"]  # no temporary left behind
    with Image.open(save_image_grid(-torch.ones(2, 1, 4, 4), tmp_path / "grey.png", nrow=8)) as picture:
        assert picture.mode == "L" and picture.size == (2 * 6 + 2, 6 + 2)


def _npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    np.savez(tmp_path / "data.npz", **arrays)
    return tmp_path / "data.npz"


def _corrupt_only_folder(tmp_path: Path) -> Path:
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    return tmp_path


BAD_INPUTS = {
    "unknown source": (lambda tmp: load_dataset("mnist", 8, 1), "unknown dataset 'mnist'"),
    "bad channels": (lambda tmp: load_dataset("digits", 8, 2), "channels must be 1"),
    "bad resolution": (lambda tmp: load_dataset("digits", 0, 1), "resolution must be a positive"),
    "bad fit": (lambda tmp: load_dataset("digits", 8, 1, fit="crop"), "unknown fit 'crop'"),
    "unknown option": (lambda tmp: load_dataset("digits", 8, 1, root="/tmp"), "unknown option.* root"),
    "missing option": (lambda tmp: load_dataset("folder", 8, 1), "needs the option.* path"),
    "bad split": (lambda tmp: load_dataset("fashion-mnist", 28, 1, split="val"), "split must be 'train' or 'test'"),
    "bad digits split": (lambda tmp: load_dataset("digits", 8, 1, split="val"), "digits split must be one of"),
    "missing folder": (lambda tmp: load_dataset("folder", 8, 1, path=tmp / "nope"), "does not exist"),
    "empty folder": (lambda tmp: load_dataset("folder", 8, 1, path=tmp), "no PNG/JPEG images"),
    "all corrupt": (
        lambda tmp: load_dataset("folder", 8, 1, path=_corrupt_only_folder(tmp)),
        "all 1 image files .* unreadable",
    ),
    "pad too small": (lambda tmp: load_dataset("digits", 4, 1, fit="pad"), "larger than resolution 4"),
    "missing npz": (lambda tmp: load_dataset("npz", 8, 1, path=tmp / "x.npz"), "does not exist"),
    "not an npz": (
        lambda tmp: load_dataset("npz", 8, 1, path=_corrupt_only_folder(tmp) / "bad.jpg"),
        "cannot read .* as a .npz",
    ),
    "wrong npz key": (
        lambda tmp: load_dataset("npz", 8, 1, path=_npz(tmp, x=np.zeros((2, 8, 8), np.uint8))),
        "no array named 'images'.*'x'",
    ),
    "no channel axis": (
        lambda tmp: load_dataset("npz", 8, 1, path=_npz(tmp, images=np.zeros((2, 5, 8, 8), np.uint8))),
        "no channel axis",
    ),
    "labels mismatch": (
        lambda tmp: load_dataset(
            "npz", 8, 1, path=_npz(tmp, images=np.zeros((3, 8, 8), np.uint8), y=np.arange(2)), labels_key="y"
        ),
        "one label per image",
    ),
    "float out of range": (
        lambda tmp: load_dataset("npz", 8, 1, path=_npz(tmp, images=-np.ones((2, 8, 8), np.float32))),
        r"must lie in \[0, 1\]",
    ),
    "int16 images": (
        lambda tmp: load_dataset("npz", 8, 1, path=_npz(tmp, images=np.zeros((2, 8, 8), np.int16))),
        "must be uint8",
    ),
    "zero batch size": (lambda tmp: BatchIterator(index_dataset(4), 0), "batch_size must be"),
    "batch above dataset": (lambda tmp: BatchIterator(index_dataset(4), 5, drop_last=True), "no batch would ever come"),
    "resume other seed": (
        lambda tmp: BatchIterator(index_dataset(4), 2, seed=1).load_state_dict(
            BatchIterator(index_dataset(4), 2, seed=0).state_dict()
        ),
        "seed 0 \\(now 1\\)",
    ),
    "grid of one image": (lambda tmp: save_image_grid(torch.zeros(3, 8, 8), tmp / "g.png"), "shape \\[N, C, H, W\\]"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_fastgen_error_naming_the_problem(case, tmp_path):
    call, message = BAD_INPUTS[case]
    with pytest.raises(FastgenError, match=message):
        call(tmp_path)
