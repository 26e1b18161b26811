"""A ResNet for supervised contrastive methods (BCL, PaCo): the encoder, a linear classifier, a
projection head, and optionally a momentum key encoder with a queue of keys. The encoder is
the CIFAR ResNet-(``depth``) (``arch = "cifar"``, 64-d features) or torchvision's ResNet-50
(``arch = "resnet50"``, 2048-d features, for large images); heads, queue and outputs are the same.

``forward`` on plain images ``(B, C, H, W)`` gives the classifier's logits (evaluation, and
any tool that wants a classifier). On a multi-view batch ``(B, V, C, H, W)``
(``train.views``) it gives a dict:

- ``logits``: the classifier on the first view, ``(B, C)``;
- ``z``: each view's projection, L2-normalised, ``(B, V, D)``;
- ``centers``: the classifier's weight vectors through a second projection head, normalised
  (``(C, D)``, BCL's class prototypes), where ``centers`` is on;
- ``keys``: the momentum encoder's projection of the second view (``(B, D)``), with
  ``queue`` and ``queue_labels`` (the keys of earlier steps), where ``queue_size`` > 0.

The key encoder is a copy of encoder and projection updated as ``k <- m k + (1 - m) q``
before each multi-view forward (MoCo); it, the queue and its write position are the model's
parameters and buffers, so they live in the checkpoint and a resumed run continues exactly.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from . import resnet50 as r50
from .resnet_cifar import CifarResNet

ARCHS = ("cifar", "resnet50")


def _projection(dim: int, out: int, norm: bool) -> nn.Sequential:
    layers = [nn.Linear(dim, dim)] + ([nn.BatchNorm1d(dim)] if norm else []) + [nn.ReLU(), nn.Linear(dim, out)]
    return nn.Sequential(*layers)


class _Encoder(nn.Module):
    """The trunk ``net`` (whose ``fc`` is the classifier) and the projection head ``proj``."""

    def __init__(self, arch: str, depth: int, num_classes: int, in_chans: int, feat_dim: int, norm: bool):
        super().__init__()
        self.arch = arch
        if arch == "resnet50":
            self.net, self.width = r50.resnet50(num_classes, in_chans), r50.WIDTH
        else:
            self.net, self.width = CifarResNet(depth, num_classes, in_chans), 64
        self.proj = _projection(self.width, feat_dim, norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features ``(B, width)``, the classifier's input."""
        net = self.net
        if self.arch == "resnet50":
            return r50.pooled_features(net, x)
        x = net.blocks(F.relu(net.bn1(net.conv1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class ContrastiveResNet(nn.Module):
    def __init__(
        self,
        depth: int = 32,
        num_classes: int = 10,
        in_chans: int = 3,
        feat_dim: int = 128,
        centers: bool = False,
        queue_size: int = 0,
        momentum: float = 0.999,
        arch: str = "cifar",
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch={arch!r}; use one of {', '.join(ARCHS)}")
        norm = centers  # BCL's heads use BatchNorm; PaCo's MoCo head does not
        self.encoder = _Encoder(arch, depth, num_classes, in_chans, feat_dim, norm)
        self.fc = self.encoder.net.fc  # the classifier (decoupling and MaxNorm find it here)
        self.center_proj = _projection(self.encoder.width, feat_dim, norm) if centers else None
        self.momentum = float(momentum)
        self.key_encoder = None
        if queue_size > 0:
            self.key_encoder = copy.deepcopy(self.encoder)
            for p in self.key_encoder.parameters():
                p.requires_grad_(False)
            self.register_buffer("queue", F.normalize(torch.randn(queue_size, feat_dim), dim=1))
            self.register_buffer("queue_labels", torch.full((queue_size,), -1, dtype=torch.long))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor):
        if x.ndim == 4:
            return self.fc(self.encoder.features(x))
        b, v = x.shape[:2]
        feats = self.encoder.features(x.flatten(0, 1))  # (B V, width), views of one image adjacent
        z = F.normalize(self.encoder.proj(feats), dim=1).view(b, v, -1)
        out = {"logits": self.fc(feats.view(b, v, -1)[:, 0]), "z": z}
        if self.center_proj is not None:
            out["centers"] = F.normalize(self.center_proj(self.fc.weight), dim=1)
        if self.key_encoder is not None:
            with torch.no_grad():
                if self.training:
                    for pk, pq in zip(self.key_encoder.parameters(), self.encoder.parameters()):
                        pk.mul_(self.momentum).add_(pq.detach(), alpha=1 - self.momentum)
                second = x[:, 1 if v > 1 else 0]
                keys = F.normalize(self.key_encoder.proj(self.key_encoder.features(second)), dim=1)
            out.update(keys=keys, queue=self.queue.clone(), queue_labels=self.queue_labels.clone())
        return out

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Write a step's keys and labels into the queue, oldest first (a ring)."""
        k = len(self.queue)
        idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % k
        self.queue[idx] = keys.detach().to(self.queue.dtype)
        self.queue_labels[idx] = labels.detach().long()
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % k)
