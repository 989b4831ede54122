"""Real-data loaders for CIFAR-10, Fashion-MNIST and UCI Adult, from local files only.

Nothing is ever downloaded. Files are looked for under the data root: the ``root``
argument, else ``$LIGHTLY_KREPES_DATA``, else ``../shared/data`` relative to the
current working directory. A missing file raises a ``FileNotFoundError`` that names
the expected paths, the accepted layouts and how to get the data.

Image datasets return float32 tensors (C, H, W) in ``[0, 1]`` without a transform and
PIL images passed to the transform otherwise, like torchvision, so they plug into
``lightly.data.LightlyDataset.from_torch_dataset`` and Lightly's transforms. The
``load_*`` functions return whole splits as tensors for fast numeric use.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Krizhevsky, 2009, Learning Multiple Layers of Features from Tiny Images
- [2] Xiao, Rasul, Vollgraf, 2017, Fashion-MNIST, arXiv 1708.07747
- [3] Becker, Kohavi, 1996, Adult, UCI Machine Learning Repository,
  doi:10.24432/C5XW20
"""

from lightly_krepes.data._images import ImageArrayDataset, to_float_images
from lightly_krepes.data._paths import (
    CACHE_ENV_VAR,
    DATA_ENV_VAR,
    resolve_cache_dir,
    resolve_data_root,
)
from lightly_krepes.data._subset import select_indices
from lightly_krepes.data.adult import (
    ADULT_1M_NUMERIC_NOISE,
    ADULT_1M_SWAP_RATE,
    ADULT_AUDIT_COLUMNS,
    ADULT_COLUMNS,
    ADULT_NUMERIC_COLUMNS,
    ADULT_SENSITIVE_COLUMNS,
    AdultData,
    AdultDataset,
    AdultPreprocessor,
    count_duplicates,
    load_adult,
    load_adult_1m,
    read_adult_csv,
)
from lightly_krepes.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_NORMALIZE,
    CIFAR10Dataset,
    load_cifar10,
)
from lightly_krepes.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_NORMALIZE,
    FashionMNISTDataset,
    load_fashion_mnist,
    read_idx,
)

__all__ = [
    "ADULT_1M_NUMERIC_NOISE",
    "ADULT_1M_SWAP_RATE",
    "ADULT_AUDIT_COLUMNS",
    "ADULT_COLUMNS",
    "ADULT_NUMERIC_COLUMNS",
    "ADULT_SENSITIVE_COLUMNS",
    "CACHE_ENV_VAR",
    "CIFAR10_CLASSES",
    "CIFAR10_NORMALIZE",
    "DATA_ENV_VAR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_NORMALIZE",
    "AdultData",
    "AdultDataset",
    "AdultPreprocessor",
    "CIFAR10Dataset",
    "FashionMNISTDataset",
    "ImageArrayDataset",
    "count_duplicates",
    "load_adult",
    "load_adult_1m",
    "load_cifar10",
    "load_fashion_mnist",
    "read_adult_csv",
    "read_idx",
    "resolve_cache_dir",
    "resolve_data_root",
    "select_indices",
    "to_float_images",
]
