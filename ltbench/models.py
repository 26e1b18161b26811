"""Model builders: a timm VisionTransformer sized by the run's training budget."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer

from .recipes import RunConfig


def build_model(cfg: RunConfig) -> torch.nn.Module:
    """A ViT trained from scratch, sized by ``cfg.train`` for ``cfg.data``'s images.

    The input size is the budget's ``img_size`` or, when 0, the dataset's native size.
    """
    t, d = cfg.train, cfg.data
    img_size = t.img_size or d.image_size
    if img_size % t.patch_size:
        raise ValueError(
            f"image size {img_size} is not a multiple of patch_size {t.patch_size} "
            f"(method {cfg.method.name}, budget {cfg.budget}); set train.img_size or train.patch_size"
        )
    if cfg.method.model != "vit":
        raise ValueError(f"unknown model family {cfg.method.model!r}; known: vit")
    return VisionTransformer(
        img_size=img_size,
        patch_size=t.patch_size,
        in_chans=d.channels,
        num_classes=d.num_classes,
        embed_dim=t.embed_dim,
        depth=t.depth,
        num_heads=t.num_heads,
        mlp_ratio=t.mlp_ratio,
        drop_path_rate=t.drop_path,
        global_pool=t.global_pool,
    )
