"""Multi-expert ResNets (RIDE, Wang et al., ICLR 2021): shared early layers, then one branch per
expert with its own later stages and classifier.

ResNet-(6n+2) as :class:`~ltbench.training.models.resnet_cifar.CifarResNet`: the stem and the
first ``shared_stages`` stages are shared; each of ``num_experts`` experts owns the remaining
stages (full width: RIDE's reduced expert widths, which keep the compute of one network, are
not used) and a classifier, cosine when the loss asks for one. ``forward`` returns the
experts' logits stacked, ``(E, B, C)``; the ``experts`` objective averages them at test.

:class:`MultiExpertResNet50` is the same on torchvision's ResNet-50, for large images: the stem
and the first ``shared_stages`` of its four bottleneck stages shared, the later stages copied
per expert, again at full width (RIDE's ResNet-50 narrows them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import resnet50 as r50
from .resnet_cifar import BasicBlock, NormedLinear

WIDTHS = (16, 32, 64)


class MultiExpertResNet(nn.Module):
    def __init__(
        self,
        depth: int = 32,
        num_classes: int = 10,
        in_chans: int = 3,
        num_experts: int = 3,
        shared_stages: int = 1,
        normed: bool = False,
    ):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2 (8, 14, 20, 32, 44, 56, 110), not {depth}")
        if not 1 <= shared_stages <= 2:
            raise ValueError(f"shared_stages must be 1 or 2 (of 3 stages), got {shared_stages}")
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        n = (depth - 2) // 6

        def stage(index: int, in_planes: int) -> nn.Sequential:
            planes, stride = WIDTHS[index], 2 if index > 0 else 1
            blocks = [BasicBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(n)]
            return nn.Sequential(*blocks)

        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.shared = nn.Sequential(*[stage(i, WIDTHS[i - 1] if i else 16) for i in range(shared_stages)])
        self.experts = nn.ModuleList(
            nn.Sequential(*[stage(i, WIDTHS[i - 1]) for i in range(shared_stages, 3)]) for _ in range(num_experts)
        )
        self.heads = nn.ModuleList(
            NormedLinear(64, num_classes) if normed else nn.Linear(64, num_classes) for _ in range(num_experts)
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.shared(F.relu(self.bn1(self.conv1(x))))
        out = [
            head(F.adaptive_avg_pool2d(branch(shared), 1).flatten(1)) for branch, head in zip(self.experts, self.heads)
        ]
        return torch.stack(out)


class MultiExpertResNet50(nn.Module):
    """ResNet-50 experts: ``stem`` and ``shared`` (the first ``shared_stages`` of layer1 ... layer4)
    run once, each of ``experts`` owns the remaining stages (its own copy, its own random
    initialisation) and ``heads`` its classifier on the pooled 2048-d feature."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        num_experts: int = 3,
        shared_stages: int = 1,
        normed: bool = False,
    ):
        super().__init__()
        if not 1 <= shared_stages < r50.STAGES:
            raise ValueError(f"shared_stages must be 1 to {r50.STAGES - 1} of {r50.STAGES} stages, got {shared_stages}")
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        trunk = r50.resnet50(num_classes, in_chans)
        self.stem = r50.stem(trunk)
        self.shared = nn.Sequential(*r50.stages(trunk)[:shared_stages])
        # One fresh ResNet-50 per expert, of which the branch keeps the later stages: the experts
        # start from different weights, as RIDE's separately built branches do.
        self.experts = nn.ModuleList(
            nn.Sequential(*r50.stages(r50.resnet50(num_classes, in_chans))[shared_stages:]) for _ in range(num_experts)
        )
        self.heads = nn.ModuleList(
            NormedLinear(r50.WIDTH, num_classes) if normed else nn.Linear(r50.WIDTH, num_classes)
            for _ in range(num_experts)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.shared(self.stem(x))
        out = [
            head(F.adaptive_avg_pool2d(branch(shared), 1).flatten(1)) for branch, head in zip(self.experts, self.heads)
        ]
        return torch.stack(out)
