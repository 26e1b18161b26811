"""Which training images an epoch visits: instance-, square-root-, class-balanced and
progressively-balanced sampling (Kang et al., Decoupling Representation and Classifier for
Long-Tailed Recognition, ICLR 2020, arXiv:1910.09217, Sec. 3).

Class ``j`` with ``n_j`` training images is drawn with probability ``p_j = n_j^q / sum_k n_k^q``:

- ``instance`` (q = 1): every image once per epoch, in a seeded random order. This is the
  plain shuffled epoch (``torch.randperm`` of the epoch's generator, nothing else drawn).
- ``square_root`` (q = 1/2) and ``class_balanced`` (q = 0).
- ``progressive``: Kang et al.'s progressively-balanced sampling,
  ``p_j(t) = (1 - a) * p_j^{q=1} + a * p_j^{q=0}`` with ``a = (epoch - 1) / (epochs - 1)``
  (epochs counted from 1; ``a = 0`` when training has one epoch). The first epoch therefore
  samples as ``instance`` (q = 1) and the last as ``class_balanced`` (q = 0); in between the
  class distribution moves linearly. (The paper writes ``a = t / T``; ltbench's 1-based
  epochs are mapped so that both ends are reached.)

For ``square_root``, ``class_balanced`` and ``progressive``, an epoch draws as many samples as
the set has images: a class from ``p`` and then an image uniformly within that class, both with
replacement, all from the epoch's seeded generator, so a resumed run draws the same epoch.

- ``class_aware``: Kang et al.'s ClassAwareSampler (facebookresearch/classifier-balancing,
  ``data/ClassAwareSampler.py``; the cRT / LWS default there). Classes come in a shuffled
  cycle (each class once, then a new shuffle); each visit of a class takes the next
  ``per_visit`` (4, the reference configs' ``num_samples_cls``) images of that class's own
  cycle of its images, reshuffled each time it runs out. Every class is therefore visited
  equally often and a class's images are used evenly, where ``class_balanced`` draws both
  i.i.d. An epoch is again ``len(labels)`` draws (the reference code also stops its epoch
  after the set's size in steps); its cycles start afresh each epoch from the epoch's seeded
  generator (the reference keeps them running across epochs), so a resumed run draws the same
  epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.registry import Registry


@dataclass(frozen=True)
class ClassSampling:
    """p_j proportional to n_j^q (``q``), or the progressive mixture (``progressive``)."""

    q: float = 1.0
    progressive: bool = False

    @property
    def permutes(self) -> bool:
        """True for instance sampling: a permutation of the set, not draws with replacement."""
        return self.q == 1.0 and not self.progressive

    def mix(self, epoch: int, epochs: int) -> float:
        """Weight of the class-balanced distribution in ``epoch`` (1-based) of ``epochs``."""
        if not self.progressive:
            return 0.0
        if epochs <= 1:
            return 0.0
        return min(max((epoch - 1) / (epochs - 1), 0.0), 1.0)

    def class_probs(self, counts: torch.Tensor, epoch: int = 1, epochs: int = 1) -> torch.Tensor:
        """Per-class sampling probabilities (float64) for classes with ``counts`` images."""
        counts = torch.as_tensor(counts, dtype=torch.float64)
        present = counts > 0  # an empty class is never drawn (0^0 would be 1)
        if self.progressive:
            a = self.mix(epoch, epochs)
            return (1 - a) * _power(counts, present, 1.0) + a * _power(counts, present, 0.0)
        return _power(counts, present, self.q)


def _power(counts: torch.Tensor, present: torch.Tensor, q: float) -> torch.Tensor:
    w = torch.where(present, counts.clamp(min=1).pow(q), torch.zeros_like(counts))
    return w / w.sum()


@dataclass(frozen=True)
class ClassAwareCycles(ClassSampling):
    """Kang et al.'s class-aware sampling: a shuffled cycle over the classes, and per class a
    reshuffled cycle over its images, ``per_visit`` images per visit of a class. Its classes
    come as often as ``class_balanced``'s (q = 0) on average, in cycles instead of i.i.d."""

    q: float = 0.0
    per_visit: int = 4

    def indices(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``len(labels)`` indices: visit after visit of a class, each ``per_visit`` images long."""
        device = generator.device
        labels = torch.as_tensor(labels).to(device=device, dtype=torch.long)
        n = len(labels)
        counts = torch.bincount(labels)
        present = torch.nonzero(counts > 0).flatten()  # an empty class is never visited
        visits = -(-n // self.per_visit)
        rounds = -(-visits // len(present))
        cycle = torch.cat([present[torch.randperm(len(present), generator=generator, device=device)]
                           for _ in range(rounds)])[:visits]  # fmt: skip
        order = torch.argsort(labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        per_class = torch.bincount(cycle, minlength=len(counts))
        blocks = []  # per class in label order: its visits' images, from its own cycles
        for j in present.tolist():
            need, size = int(per_class[j]) * self.per_visit, int(counts[j])
            if need == 0:
                continue
            images = order[starts[j] : starts[j] + size]
            perms = [images[torch.randperm(size, generator=generator, device=device)] for _ in range(-(-need // size))]
            blocks.append(torch.cat(perms)[:need].view(-1, self.per_visit))
        rows = torch.empty(visits, self.per_visit, dtype=torch.long, device=device)
        rows[torch.argsort(cycle, stable=True)] = torch.cat(blocks)  # the k-th visit of j gets j's k-th block
        return rows.flatten()[:n]


SAMPLERS: Registry[ClassSampling] = Registry("sampler", entry_points="ltbench.samplers", targets=False)
SAMPLERS.add("instance", ClassSampling(1.0))
SAMPLERS.add("square_root", ClassSampling(0.5))
SAMPLERS.add("class_balanced", ClassSampling(0.0))
SAMPLERS.add("progressive", ClassSampling(progressive=True))
SAMPLERS.add("class_aware", ClassAwareCycles(per_visit=4))


def epoch_indices(
    name: str, labels: torch.Tensor, generator: torch.Generator, epoch: int = 1, epochs: int = 1
) -> torch.Tensor:
    """The indices one epoch visits, ``len(labels)`` of them, on ``generator``'s device.

    ``instance`` returns ``torch.randperm(len(labels), generator=generator)`` and draws
    nothing else, so its order is the one ltbench has always used.
    """
    sampling = SAMPLERS.get(name)
    device = generator.device
    n = len(labels)
    if isinstance(sampling, ClassAwareCycles):
        return sampling.indices(labels, generator)
    if sampling.permutes:
        return torch.randperm(n, generator=generator, device=device)
    labels = torch.as_tensor(labels).to(device=device, dtype=torch.long)
    counts = torch.bincount(labels)
    probs = sampling.class_probs(counts.cpu(), epoch, epochs).to(device)
    classes = torch.multinomial(probs, n, replacement=True, generator=generator)
    # images of each class, contiguous: order[starts[j] : starts[j] + counts[j]]
    order = torch.argsort(labels, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    size = counts[classes]
    within = torch.minimum((u * size).long(), size - 1)  # u < 1; the minimum guards rounding
    return order[starts[classes] + within]
