"""Sharpness-aware minimisation (Foret et al., ICLR 2021, arXiv:2010.01412).

DeiT-LT distils from a "flat" CNN teacher trained with SAM (LDAM-DRW + SAM, Rangwani et al.,
NeurIPS 2022). One SAM update is two passes: the gradient g at w gives the ascent point
w + rho * g / ||g||; the gradient there updates the original w with the base optimiser.
No well-kept library ships SAM for torch, so it is written here, small.

BatchNorm: both forward passes run in train mode. Given the model, the second pass leaves
the running statistics alone (momentum 0 for that pass, as davda54/sam's example does), so
one step updates them once; without it both passes update them, as the LDAM-DRW + SAM code
of the DeiT-LT teacher (val-iisc/Saddle-LongTail) does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.nn.modules.batchnorm import _BatchNorm


class SAM:
    """Wraps a base optimiser; call :meth:`step` with a closure that recomputes the loss.

    Example:
        >>> sam = SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05)
        >>> def closure():
        ...     sam.zero_grad(); loss = criterion(model(x), y); loss.backward(); return loss
        >>> loss = sam.step(closure)
    """

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05, model: torch.nn.Module | None = None):
        self.base, self.rho, self.model = base, rho, model

    @property
    def rho(self) -> float:
        return self._rho

    @rho.setter
    def rho(self, value: float) -> None:  # set per epoch by a rho schedule
        if not value > 0:
            raise ValueError(f"SAM needs rho > 0, got {value}")
        self._rho = float(value)

    @property
    def param_groups(self):
        # Always the base optimiser's: load_state_dict replaces its list on resume.
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def _params(self):
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def _ascend(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        params = self._params()
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        scale = self.rho / (norm + 1e-12)
        moved = []
        for p in params:
            e = p.grad * scale
            p.add_(e)
            moved.append((p, e))
        return moved

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Two passes: ``closure`` at w (gradient -> ascent), then at w + e (update w)."""
        loss = closure()
        moved = self._ascend()
        with self._bn_frozen():
            closure()
        with torch.no_grad():
            for p, e in moved:
                p.sub_(e)
        self.base.step()
        return loss

    @contextlib.contextmanager
    def _bn_frozen(self):
        """With a model: BatchNorm running statistics (and batch counts) unchanged inside."""
        norms = [m for m in self.model.modules() if isinstance(m, _BatchNorm)] if self.model is not None else []
        saved = [
            (m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms
        ]
        for m in norms:
            m.momentum = 0.0
        try:
            yield
        finally:
            for m, momentum, tracked in saved:
                m.momentum = momentum
                if tracked is not None:
                    m.num_batches_tracked.copy_(tracked)

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)
