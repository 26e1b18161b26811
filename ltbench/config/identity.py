"""A run's identity: the resolved configuration without descriptive and execution settings, and its hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .specs import DESCRIPTIVE_KEYS, EXECUTION_KEYS, RunConfig

# Keys added after runs were stored, with the value that means "not used": left out of the
# identity at that value, so every run that does not use them keeps its id. (Model settings
# such as ``num_experts`` or ``feat_dim`` are left out at their defaults: those must never change.)
_UNUSED_AT = {
    "backbone_bn": "",
    "max_norm": 0.0,
    "num_experts": 3,
    "shared_stages": 1,
    "views": 1,
    "test_views": 0,
    "feat_dim": 128,
    "queue_size": 0,
    "key_momentum": 0.999,
}


def identity(x: Any) -> Any:
    """What of a config's dict form decides a result: descriptive and execution fields
    removed (and :data:`_UNUSED_AT` keys at their unused value), numbers as floats."""
    if isinstance(x, dict):
        return {
            k: identity(v)
            for k, v in x.items()
            if k not in DESCRIPTIVE_KEYS | EXECUTION_KEYS and not (k in _UNUSED_AT and v == _UNUSED_AT[k])
        }
    if isinstance(x, list):
        return [identity(v) for v in x]
    if isinstance(x, int) and not isinstance(x, bool):
        return float(x)  # --set tau=1 and the recipe's 1.0 are the same setting
    return x


def config_hash(cfg: RunConfig, plain: dict[str, Any] | None = None) -> str:
    """Stable identity of a run: SHA-256 of the canonical JSON of its :func:`identity`
    (``plain``: that identity, when the caller has it already)."""
    blob = json.dumps(identity(cfg.to_dict()) if plain is None else plain, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
