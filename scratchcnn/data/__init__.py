"""Data sets: MNIST and Fashion-MNIST from IDX files, and scikit-learn's bundled digits."""
from scratchcnn.data.datasets import DataSplits, load_dataset, load_raw, normalize
from scratchcnn.data.idx import parse_idx, read_idx
from scratchcnn.data.registry import DATASET_NAMES, IDX_DATASETS
from scratchcnn.data.sources import cache_dir, download, find_or_download, locate

__all__ = ["DataSplits", "load_dataset", "load_raw", "normalize", "read_idx", "parse_idx",
           "DATASET_NAMES", "IDX_DATASETS", "cache_dir", "download", "find_or_download", "locate"]
