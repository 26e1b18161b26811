"""Execution settings (workers, torch.compile, checkpoint spacing, memory format): they change
how fast a run goes, never what it computes, and stay out of the run's identity."""

import random

import numpy as np
import pytest
import torch

from ltbench.config.identity import config_hash
from ltbench.config.overrides import apply_overrides
from ltbench.config.run_config import resolve
from ltbench.data import build_data
from ltbench.data.stream import StreamBatches
from ltbench.training.checkpoints import CHECKPOINT
from ltbench.training.loop import Dependencies, build_objective, fit
from ltbench.training.objectives import Classify, channels_last


def _noise_jpegs(root, prefix, counts):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in counts.items():
        lines = []
        for c, n in enumerate(per_class):
            for k in range(n):
                rel = f"{split}/{c}/{k}.jpg"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / rel, quality=95)
                lines.append(f"{rel} {c}")
        (root / f"{prefix}_{split}.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def streamed(catalog, tmp_path):
    """places_lt's streamed recipe (RandAugment, random erasing) on 20 noise JPEGs of 2 classes."""
    _noise_jpegs(tmp_path, "Two_LT", {"train": [12, 8], "val": [1, 1], "test": [2, 2]})
    cfg = resolve(catalog.methods.get("ce"), catalog.datasets.get("places_lt"), "smoke")
    cfg = apply_overrides(cfg, ("file_prefix=Two_LT", "num_classes=2", "img_size=16"))
    return cfg, build_data(cfg.data, 0, tmp_path, verify=False)


def _epoch(batches, seed):
    random.seed(seed)  # random erasing runs on the batch, in the training process
    torch.manual_seed(seed)  # and fills with noise from torch's generator
    xs, ys = zip(*batches.train_batches(6, seed))
    return torch.cat(xs), torch.cat(ys)


def test_streamed_augmentation_does_not_depend_on_workers(streamed):
    cfg, data = streamed
    inline = StreamBatches(data.root, data.train, cfg.data, 16, "cpu", workers=0)
    pooled = StreamBatches(data.root, data.train, cfg.data, 16, "cpu", workers=2)
    x0, y0 = _epoch(inline, 7)
    x2, y2 = _epoch(pooled, 7)
    assert x0.shape == (18, 3, 16, 16)  # 20 images, batches of 6, last one dropped
    assert torch.equal(y0, y2) and torch.equal(x0, x2)
    # The workers live on across epochs and still follow each epoch's seed.
    x2b, y2b = _epoch(pooled, 8)
    x0b, y0b = _epoch(inline, 8)
    assert torch.equal(x2b, x0b) and torch.equal(y2b, y0b)
    assert not torch.equal(x2b, x2)
    # Normalised on the batch: the mean and std of the recipe, applied to 0..255 pixels.
    raw = next(iter(inline._loader(False, 4)))[0]
    ev, _ = next(iter(inline.eval_batches(4)))
    mean, std = torch.tensor(cfg.data.mean).view(1, 3, 1, 1), torch.tensor(cfg.data.std).view(1, 3, 1, 1)
    assert raw.dtype == torch.uint8
    assert torch.allclose(ev, (raw.float() / 255 - mean) / std, atol=1e-5)


def test_execution_settings_stay_out_of_the_run_identity(smoke_config):
    base = smoke_config("ce")
    fast = smoke_config("ce", "num_workers=16", "compile=true", "checkpoint_minutes=30")
    assert config_hash(base) == config_hash(fast)
    assert config_hash(base) != config_hash(smoke_config("ce", "epochs=3"))


def test_checkpoint_minutes_spaces_checkpoints_but_keeps_the_last(smoke_config, digits, tmp_path):
    cfg = smoke_config("ce", "epochs=3", "checkpoint_minutes=60")
    saved = []

    def watch(epoch, total, row):
        path = tmp_path / "run" / CHECKPOINT
        saved.append(torch.load(path, weights_only=False)["epoch"] if path.exists() else None)

    every = fit(smoke_config("ce", "epochs=3"), digits, tmp_path / "every")
    spaced = fit(cfg, digits, tmp_path / "run", on_epoch=watch)
    assert saved == [None, None, 3]  # nothing before the hour is up, the last epoch always
    assert spaced.results["last"]["correct"] == every.results["last"]["correct"]


def test_channels_last_is_for_convolutions_on_cuda_and_keeps_the_numbers(smoke_config, digits):
    cnn = build_objective(smoke_config("cnn_ce"), digits, torch.device("cpu"), Dependencies())
    vit = build_objective(smoke_config("ce"), digits, torch.device("cpu"), Dependencies())
    assert cnn.memory_format == vit.memory_format == torch.contiguous_format  # CPU: left alone
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    reference = cnn.loss(x, y, 1)
    cnn.model.to(memory_format=torch.channels_last)  # what channels_last() does on CUDA
    nhwc = Classify(cnn.model, cnn.criterion, cnn.num_classes, memory_format=torch.channels_last)
    conv = next(m for m in cnn.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.loss(x, y, 1).item() == pytest.approx(reference.item(), rel=1e-5)
    assert channels_last(vit.model, torch.device("cuda")) == torch.contiguous_format  # ViT: patch conv only


@pytest.mark.slow
def test_compiled_forward_trains_like_eager(smoke_config, digits, tmp_path):
    eager = fit(smoke_config("ce", "epochs=1"), digits, tmp_path / "eager")
    compiled = fit(smoke_config("ce", "epochs=1", "compile=true"), digits, tmp_path / "compiled")
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"], rel=1e-3)


def test_randaugment_posterize_to_zero_bits_is_black():
    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform

    from ltbench.data.stream import _fix_timm_posterize

    _fix_timm_posterize()
    # One op (PosterizeIncreasing) at magnitude 10: 4 - int(10 / 10 * 4) = 0 bits to keep.
    ra = rand_augment_transform("rand-n1-m10-inc1", {}, transforms=["PosterizeIncreasing"])
    ra.ops[0].prob = 1.0
    out = np.asarray(ra(Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8))))
    assert out.max() == 0


def test_reports_pool_runs_that_differ_only_in_execution_settings(smoke_config):
    from ltbench.reports.runs import variant_of

    plain = {"config": smoke_config("ce").to_dict()}
    fast = {"config": smoke_config("ce", "num_workers=16", "compile=true").to_dict()}
    other = {"config": smoke_config("ce", "epochs=3").to_dict()}
    assert variant_of(plain) == variant_of(fast) != variant_of(other)
