"""Your own images as a data set: a folder of class sub-folders, as torchvision's ``ImageFolder``
and Keras' ``image_dataset_from_directory`` read it.

``load_folder(root, ...)`` returns ``DataSplits`` like ``scratchcnn.data.load_dataset``:

1. ``scan.scan_folder`` lists the images (``ROOT/<class>/`` or ``ROOT/train/<class>/`` and
   ``ROOT/test/<class>/``; class names are the folder names, sorted) with their sizes and
   modification times, and one line for each file or folder that cannot be used;
2. ``cache.open_cache`` decodes them once (Pillow; any size or mode), resized as
   ``predict`` resizes an image for such a model, into a uint8 memory map in the user
   cache folder, keyed by the listing and the options; later runs open it at once;
3. ``loader.load_folder`` holds out a stratified test split when there is no ``test/``
   folder, then the validation split as for the built-in sets, computes per-channel
   statistics on the training split, and wraps each split as
   ``scratchcnn.data.streaming.NormalizedRows`` (standardised per batch).

Example
-------
>>> splits = load_folder("photos", val_fraction=0.1, image_size=(32, 32))   # doctest: +SKIP
>>> splits.class_names, splits.input_shape                                  # doctest: +SKIP
(['cat', 'dog'], (3, 32, 32))
"""
from scratchcnn.data.folder.cache import MAX_DEFAULT_SIDE, decode_entry, folder_cache_root
from scratchcnn.data.folder.loader import DEFAULT_TEST_FRACTION, TEST_SPLIT_SEED, load_folder
from scratchcnn.data.folder.scan import image_extensions, scan_folder

__all__ = ["load_folder", "scan_folder", "image_extensions", "decode_entry", "folder_cache_root",
           "DEFAULT_TEST_FRACTION", "TEST_SPLIT_SEED", "MAX_DEFAULT_SIDE"]
