"""Write mnist_lt as JPEG files with OLTR split lists, to measure ltbench's streamed path.

    python benchmarks/jpeg_mnist.py /tmp/mnist_jpeg
    ltbench --recipes benchmarks/recipes bench --data mnist_jpeg_lt --root /tmp/mnist_jpeg

The files hold exactly the images of mnist_lt (data seed 0): train, val and test, so the
streamed and in-memory paths can be compared on the same data and model.
"""

import sys
from pathlib import Path

from PIL import Image

from ltbench.data import build_data
from ltbench.recipes import load_catalog


def main(root: Path) -> None:
    data = build_data(load_catalog().datasets.get("mnist_lt"), 0)
    for split in ("train", "val", "test"):
        part = getattr(data, split)
        lines = []
        for i, (img, label) in enumerate(zip(part.images, part.labels.tolist())):
            rel = f"{split}/{label}/{i:05d}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0]).convert("RGB").save(root / rel, quality=95)
            lines.append(f"{rel} {label}")
        (root / f"MNIST_LT_{split}.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(data.train)} / {len(data.val)} / {len(data.test)} images under {root}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
