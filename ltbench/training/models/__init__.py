"""Model builders: ViT and DeiT (timm), CIFAR-style ResNets and ResNet-50s (timm's for `cnn`, torchvision's for
the expert and contrastive families), sized by the budget."""

from __future__ import annotations

import torch

from ...config.specs import RunConfig
from ...core.registry import Registry

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


# Model families by name: ``model = "<name>"`` in a recipe, an entry point of
# ``ltbench.models``, or ``module:attr``; each builder takes the run's config.
MODELS: Registry = Registry("model", entry_points="ltbench.models")


def build_model(cfg: RunConfig) -> torch.nn.Module:
    """The network of ``cfg.method.model`` (:data:`MODELS`) for ``cfg.data``'s images under ``cfg.train``.

    - ``vit``: timm VisionTransformer trained from scratch.
    - ``deit``: timm's distilled ViT (CLS and DIST tokens, two heads; eval averages them).
    - ``cnn``: ResNet-(``cnn_depth``) of the LDAM code for inputs up to 64 px, timm's
      ResNet-50 above; the classifier is cosine when the loss asks for one
      (``cosine_classifier``, as LDAM).
    - ``mae``: the ViT encoder of the MGP stage (no classifier head).
    - ``cnn_experts``: RIDE's multi-expert ResNet (CIFAR-style up to 64 px, torchvision's
      ResNet-50 above, as ``cnn``); logits ``(E, B, C)``.
    - ``cnn_contrastive``: a ResNet (the same choice) with projection heads (and a momentum
      queue) for BCL and PaCo on two-view batches.
    """
    return MODELS.get(cfg.method.model)(cfg)


@MODELS.register("vit")
def _vit(cfg: RunConfig) -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer  # here: a plan needs only the names

    t = cfg.train
    return VisionTransformer(**vit_kwargs(cfg), drop_path_rate=t.drop_path, global_pool=t.global_pool)


@MODELS.register("deit")
def _deit(cfg: RunConfig) -> torch.nn.Module:
    from timm.models.deit import VisionTransformerDistilled

    model = VisionTransformerDistilled(**vit_kwargs(cfg), drop_path_rate=cfg.train.drop_path)
    model.set_distilled_training(True)
    return model


@MODELS.register("mae")
def _mae_encoder(cfg: RunConfig) -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**{**vit_kwargs(cfg), "num_classes": 0})


@MODELS.register("cnn")
def _cnn(cfg: RunConfig) -> torch.nn.Module:
    from ..losses import loss_class

    t, d = cfg.train, cfg.data
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


@MODELS.register("cnn_experts")
def _cnn_experts(cfg: RunConfig) -> torch.nn.Module:
    """RIDE's multi-expert ResNet (``num_experts``, ``shared_stages``): ResNet-(``cnn_depth``) of
    the LDAM code for inputs up to 64 px, torchvision's ResNet-50 above."""
    from ..losses import loss_class
    from .multi_expert import MultiExpertResNet, MultiExpertResNet50

    t, d = cfg.train, cfg.data
    normed = bool(getattr(loss_class(cfg.method.loss), "cosine_classifier", False))
    if input_size(cfg) > SMALL_IMAGE:
        return MultiExpertResNet50(d.num_classes, d.channels, t.num_experts, t.shared_stages, normed)
    return MultiExpertResNet(t.cnn_depth, d.num_classes, d.channels, t.num_experts, t.shared_stages, normed)


@MODELS.register("cnn_contrastive")
def _cnn_contrastive(cfg: RunConfig) -> torch.nn.Module:
    """A ResNet (CIFAR-style up to 64 px, torchvision's ResNet-50 above) with a projection head,
    BCL's prototype head where the loss uses centres, and a momentum key encoder and queue
    where ``queue_size`` > 0 (PaCo)."""
    from ..losses import loss_class
    from .contrastive import ContrastiveResNet

    t, d = cfg.train, cfg.data
    loss = loss_class(cfg.method.loss)
    if getattr(loss, "uses_queue", False) and t.queue_size <= 0:
        raise ValueError(f"loss {cfg.method.loss!r} contrasts with a queue of keys: set train.queue_size > 0")
    centers = bool(getattr(loss, "uses_centers", False))
    arch = "resnet50" if input_size(cfg) > SMALL_IMAGE else "cifar"
    return ContrastiveResNet(
        t.cnn_depth, d.num_classes, d.channels, t.feat_dim, centers, t.queue_size, t.key_momentum, arch=arch
    )
