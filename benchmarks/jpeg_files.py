"""Write an in-memory dataset's images as JPEG files with OLTR split lists, to measure
ltbench's streamed path on the same images the in-memory path uses.

    python benchmarks/jpeg_files.py /tmp/mnist_jpeg
    ltbench --recipes benchmarks/recipes bench --data mnist_jpeg_lt --root /tmp/mnist_jpeg

    # ImageNet-like decode cost: Fashion-MNIST-LT upscaled to 224 px
    python benchmarks/jpeg_files.py /tmp/fm224 --dataset fashion_mnist_lt --size 224
    ltbench --recipes benchmarks/recipes bench --data mnist_jpeg_lt --root /tmp/fm224 \\
        --set file_prefix=FASHION_MNIST_LT --set img_size=224 ...

The files hold exactly the images of the dataset (data seed 0): train, val and test, written
as ``<DATASET>_{train,val,test}.txt`` (e.g. MNIST_LT_train.txt).
"""

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from ltbench.data import build_data
from ltbench.planning.catalog import load_catalog


def _write(job):
    img, path, size = job
    pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)).convert("RGB")
    if size and size != pil.width:
        pil = pil.resize((size, size), Image.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path, quality=95)


def main(root: Path, dataset: str, size: int, data_root: str | None) -> None:
    data = build_data(load_catalog().datasets.get(dataset), 0, data_root)
    prefix = dataset.upper()
    jobs = []
    for split in ("train", "val", "test"):
        part = getattr(data, split)
        lines = []
        for i, (img, label) in enumerate(zip(part.images, part.labels.tolist())):
            rel = f"{split}/{label}/{i:05d}.jpg"
            jobs.append((img, root / rel, size))
            lines.append(f"{rel} {label}")
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{prefix}_{split}.txt").write_text("\n".join(lines) + "\n")
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write, jobs, chunksize=256))
    print(f"wrote {len(data.train)} / {len(data.val)} / {len(data.test)} images under {root} ({prefix}_*.txt)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--dataset", default="mnist_lt", help="an in-memory dataset (default: %(default)s)")
    ap.add_argument("--size", type=int, default=0, help="resize to this square size (default: native)")
    ap.add_argument("--data-root", default=None, help="the dataset's own files, if not at the recipe's default")
    a = ap.parse_args()
    main(a.root, a.dataset, a.size, a.data_root)
