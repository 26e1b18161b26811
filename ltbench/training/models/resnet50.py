"""torchvision's ResNet-50 (He et al., 2016; no pretrained weights) cut into the parts that the
multi-expert and contrastive models share or copy: the stem (7x7 convolution, BatchNorm,
ReLU, max pooling) and the four bottleneck stages ``layer1`` ... ``layer4``, whose pooled
output has :data:`WIDTH` channels. The families pick it for images above
``models.SMALL_IMAGE`` pixels, as the plain ``cnn`` model picks its ResNet-50.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTH = 2048  # channels of layer4's output, the pooled feature
STAGES = 4


def resnet50(num_classes: int, in_chans: int = 3) -> nn.Module:
    """A torchvision ResNet-50 with random weights, ``in_chans`` input channels and a linear ``fc``."""
    from torchvision.models import resnet50 as build  # here: a plan needs only the model names

    net = build(weights=None, num_classes=num_classes)
    if in_chans != 3:
        net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's
    return net


def stem(net: nn.Module) -> nn.Sequential:
    """The layers before ``layer1``, as one module (they share ``net``'s parameters)."""
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)


def stages(net: nn.Module) -> list[nn.Module]:
    """``layer1`` ... ``layer4`` of ``net`` (the modules themselves, not copies)."""
    return [net.layer1, net.layer2, net.layer3, net.layer4]


def pooled_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net``'s globally average-pooled layer4 output ``(B, WIDTH)``: its ``fc`` input."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    for layer in stages(net):
        x = layer(x)
    return torch.flatten(net.avgpool(x), 1)
