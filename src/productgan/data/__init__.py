"""Data sources, the packed dataset format, and ``prepare``, which turns one into the other."""

from productgan.config import IMAGE_SIZES, check_image_size
from productgan.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FILES,
    FashionMNIST,
    find_fashion_mnist,
    load_fashion_mnist,
    read_idx,
    search_folders,
)
from productgan.data.packed import SPLITS, UNLABELLED, PackedDataset, check_output_folder, is_packed_dataset
from productgan.data.prepare import (
    build_fashion_mnist,
    fit_fashion_mnist,
    open_dataset,
    prepare,
    stratified_split,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FILES",
    "IMAGE_SIZES",
    "SPLITS",
    "UNLABELLED",
    "FashionMNIST",
    "PackedDataset",
    "build_fashion_mnist",
    "check_image_size",
    "check_output_folder",
    "find_fashion_mnist",
    "fit_fashion_mnist",
    "is_packed_dataset",
    "load_fashion_mnist",
    "open_dataset",
    "prepare",
    "read_idx",
    "search_folders",
    "stratified_split",
]
