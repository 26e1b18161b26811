"""Sharpness-aware minimisation (Foret et al., ICLR 2021, arXiv:2010.01412).

DeiT-LT distils from a "flat" CNN teacher trained with SAM (LDAM-DRW + SAM, Rangwani et al.,
NeurIPS 2022). One SAM update is two passes: the gradient g at w gives the ascent point
w + rho * g / ||g||; the gradient there updates the original w with the base optimiser.
No well-kept library ships SAM for torch, so it is written here, small.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class SAM:
    """Wraps a base optimiser; call :meth:`step` with a closure that recomputes the loss.

    Example:
        >>> sam = SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05)
        >>> def closure():
        ...     sam.zero_grad(); loss = criterion(model(x), y); loss.backward(); return loss
        >>> loss = sam.step(closure)
    """

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05):
        if rho <= 0:
            raise ValueError(f"SAM needs rho > 0, got {rho}")
        self.base, self.rho = base, rho

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
        closure()
        with torch.no_grad():
            for p, e in moved:
                p.sub_(e)
        self.base.step()
        return loss

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)
