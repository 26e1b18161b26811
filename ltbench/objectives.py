"""What one training step computes and how a model is evaluated, per kind of method.

- :class:`Classify`: a classifier and a loss of ``(logits, target)`` (ce, la, bce, bal_bce, ldam).
- :class:`Distill`: DeiT-LT. The student's CLS and DIST heads; the frozen teacher sees the
  student's augmented, mixed batch resized to its own resolution (out-of-distribution
  distillation) and gives hard labels; from the DRW epoch the DIST term is re-weighted.
  Evaluation keeps the CLS-only, DIST-only and averaged predictions.
- :class:`MaskedPretrain`: the MAE objective of the MGP stage; nothing to evaluate.

The trainer (``ltbench.train``) only calls ``loss(x, target, epoch)`` and ``evaluate``.
Training goes through ``self.forward`` (the model, or its DistributedDataParallel wrapper,
which the trainer sets); evaluation uses the bare ``self.model``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metrics import ClassStats


def _autocast(device: torch.device):
    # bf16 on CUDA; the CPU path stays in fp32, where autocast is slower and less exact.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def channels_last(model: torch.nn.Module, device: torch.device) -> torch.memory_format:
    """NHWC for a convolutional network on CUDA, where cuDNN's fast kernels want it (the
    model's weights are converted here; inputs follow in the objective)."""
    has_conv = any(isinstance(m, torch.nn.Conv2d) and m.kernel_size != m.stride for m in model.modules())
    if device.type != "cuda" or not has_conv:
        return torch.contiguous_format
    model.to(memory_format=torch.channels_last)
    return torch.channels_last


class Classify:
    has_eval = True

    def __init__(
        self,
        model: torch.nn.Module,
        criterion: torch.nn.Module,
        num_classes: int,
        drw_epoch: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.model, self.criterion, self.num_classes, self.drw_epoch = model, criterion, num_classes, drw_epoch
        self.forward = model
        self.memory_format = memory_format

    def reweight(self, epoch: int) -> bool:
        # Epochs count from 1: drw_epoch = 160 of 200 re-weights the last 40, as the LDAM code.
        return bool(self.drw_epoch) and epoch > self.drw_epoch

    def loss(self, x: torch.Tensor, target: torch.Tensor, epoch: int) -> torch.Tensor:
        if hasattr(self.criterion, "set_reweight"):
            self.criterion.set_reweight(self.reweight(epoch))
        with _autocast(x.device):
            return self.criterion(self.forward(x.contiguous(memory_format=self.memory_format)), target)

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.model(x.contiguous(memory_format=self.memory_format))
        calibrated = getattr(self.criterion, "calibrated", None)  # e.g. LDAM's scale s
        return {"main": calibrated(z) if calibrated is not None else z}

    @torch.inference_mode()
    def evaluate(self, batches, batch_size: int) -> dict:
        """Per-class correct/total and calibration bins; extra heads under ``heads``."""
        self.model.eval()
        stats: dict[str, ClassStats] = {}
        with _autocast(batches.device):
            for x, y in batches.eval_batches(batch_size):
                for name, z in self.logits(x).items():
                    stats.setdefault(name, ClassStats(self.num_classes, batches.device)).update(z, y)
        out = stats.pop("main").as_dict()
        if stats:
            out["heads"] = {name: s.as_dict() for name, s in stats.items()}
        return out


class Distill(Classify):
    def __init__(
        self, model, criterion, num_classes: int, teacher: torch.nn.Module, teacher_size: int, drw_epoch: int = 0
    ):
        super().__init__(model, criterion, num_classes, drw_epoch)
        self.teacher, self.teacher_size = teacher.eval(), teacher_size
        self.teacher_format = channels_last(teacher, next(teacher.parameters()).device)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def loss(self, x: torch.Tensor, target: torch.Tensor, epoch: int) -> torch.Tensor:
        with torch.no_grad(), _autocast(x.device):
            seen = (
                x
                if x.shape[-1] == self.teacher_size
                else F.interpolate(x, size=(self.teacher_size, self.teacher_size), mode="bilinear", align_corners=False)
            )
            teacher_logits = self.teacher(seen.contiguous(memory_format=self.teacher_format))
        with _autocast(x.device):
            cls, dist = self.forward(x)
            return self.criterion(cls, dist, target, teacher_logits, reweight=self.reweight(epoch))

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.model.forward_features(x)
        cls, dist = self.model.head(feats[:, 0]), self.model.head_dist(feats[:, 1])
        return {"main": (cls + dist) / 2, "cls": cls, "dist": dist}


class MaskedPretrain:
    has_eval = False

    def __init__(self, mae: torch.nn.Module):
        self.model = self.forward = mae

    def loss(self, x: torch.Tensor, target: torch.Tensor, epoch: int) -> torch.Tensor:
        with _autocast(x.device):
            return self.forward(x)[0]
