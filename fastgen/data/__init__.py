"""Training data: load a dataset into memory at the model's resolution, iterate seeded resumable batches,
save image grids.

    dataset = load_dataset("fashion-mnist", resolution=32, channels=1, fit="pad", split="train")
    batches = BatchIterator(dataset, batch_size=128, seed=0)
    images, labels = next(batches)          # [128, 1, 32, 32] float32 in [-1, 1], int64 [128]
    checkpoint["data"] = batches.state_dict()   # later: batches.load_state_dict(checkpoint["data"])
"""

from fastgen.data.dataset import SOURCES, DatasetInfo, ImageDataset, has_splits, load_dataset
from fastgen.data.images import images_to_uint8, save_image_grid
from fastgen.data.iterator import BatchIterator
from fastgen.data.preprocess import FITS

__all__ = [
    "FITS",
    "SOURCES",
    "BatchIterator",
    "DatasetInfo",
    "ImageDataset",
    "has_splits",
    "images_to_uint8",
    "load_dataset",
    "save_image_grid",
]
