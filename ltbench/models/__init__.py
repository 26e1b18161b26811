"""Model builders: ViT and DeiT (timm), CIFAR-style ResNets and timm's ResNet-50, sized by the budget."""

from __future__ import annotations

import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from ..recipes import RunConfig

SMALL_IMAGE = 64  # up to this input size a CNN is the CIFAR-style ResNet, above it ResNet-50


def input_size(cfg: RunConfig) -> int:
    return cfg.train.img_size or cfg.data.image_size


def vit_kwargs(cfg: RunConfig) -> dict:
    t, d = cfg.train, cfg.data
    size = input_size(cfg)
    if size % t.patch_size:
        raise ValueError(
            f"image size {size} is not a multiple of patch_size {t.patch_size} "
            f"(method {cfg.method.name}, budget {cfg.budget}); set train.img_size or train.patch_size"
        )
    return dict(
        img_size=size,
        patch_size=t.patch_size,
        in_chans=d.channels,
        num_classes=d.num_classes,
        embed_dim=t.embed_dim,
        depth=t.depth,
        num_heads=t.num_heads,
        mlp_ratio=t.mlp_ratio,
    )


def build_model(cfg: RunConfig) -> torch.nn.Module:
    """The network of ``cfg.method.model`` for ``cfg.data``'s images under ``cfg.train``.

    - ``vit``: timm VisionTransformer trained from scratch.
    - ``deit``: timm's distilled ViT (CLS and DIST tokens, two heads; eval averages them).
    - ``cnn``: ResNet-(``cnn_depth``) of the LDAM code for inputs up to 64 px, timm's
      ResNet-50 above; with the ``ldam`` loss the classifier is cosine.
    """
    t, d, kind = cfg.train, cfg.data, cfg.method.model
    if kind == "vit":
        return VisionTransformer(**vit_kwargs(cfg), drop_path_rate=t.drop_path, global_pool=t.global_pool)
    if kind == "deit":
        model = VisionTransformerDistilled(**vit_kwargs(cfg), drop_path_rate=t.drop_path)
        model.set_distilled_training(True)
        return model
    if kind == "cnn":
        from ..losses import loss_class

        normed = bool(getattr(loss_class(cfg.method.loss), "cosine_classifier", False))
        if input_size(cfg) <= SMALL_IMAGE:
            from .resnet_cifar import CifarResNet

            return CifarResNet(t.cnn_depth, d.num_classes, d.channels, normed)
        import timm

        from .resnet_cifar import NormedLinear

        model = timm.create_model("resnet50", num_classes=d.num_classes, in_chans=d.channels)
        if normed:
            model.fc = NormedLinear(model.fc.in_features, d.num_classes)
        return model
    raise ValueError(f"unknown model family {kind!r}; known: vit, deit, cnn")
