"""Data sets: MNIST and Fashion-MNIST from IDX files, CIFAR-10 from its binary records, and
scikit-learn's bundled digits."""
from scratchcnn.data.cifar import parse_records, read_records
from scratchcnn.data.datasets import DataSplits, load_dataset, load_raw, normalize, pixel_statistics
from scratchcnn.data.idx import parse_idx, read_idx
from scratchcnn.data.registry import CIFAR_DATASETS, DATASET_NAMES, DOWNLOADABLE, IDX_DATASETS
from scratchcnn.data.sources import cache_dir, download, find_or_download, locate

__all__ = ["DataSplits", "load_dataset", "load_raw", "normalize", "pixel_statistics", "read_idx", "parse_idx",
           "parse_records", "read_records", "DATASET_NAMES", "IDX_DATASETS", "CIFAR_DATASETS", "DOWNLOADABLE",
           "cache_dir", "download", "find_or_download", "locate"]
