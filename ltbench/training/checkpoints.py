"""Checkpoint files: their names, atomic saving, loading model state and a pretrained encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.atomic import write_atomic

CHECKPOINT = "checkpoint.pt"


# The best-on-validation weights of a finished run, beside its checkpoint, where the validation
# set chose an epoch before the last (else the checkpoint holds them): what a consuming stage
# loads with selection = "best_val" (runner.stage_weights).
BEST_VAL = "best_val.pt"


def save_atomic(obj: dict, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def _load_model_state(path: Path, device) -> dict:
    return torch.load(path, map_location=device, weights_only=True)["model"]


# What an MGP encoder may lack or bring when it initialises a classifier, as in MAE's
# fine-tuning: the classifier lacks only its head and, with global_pool="avg", the pooled
# norm (fc_norm); the checkpoint's final norm goes unused by an average-pooled model.
_MAY_BE_MISSING = ("head.", "fc_norm.")


_MAY_BE_UNUSED = ("norm.",)


def load_pretrained_encoder(model: torch.nn.Module, path: Path) -> None:
    """Initialise ``model`` from the encoder of the MGP checkpoint at ``path``.

    Raises:
        ValueError: a weight the model needs is not in the checkpoint, or the checkpoint
            holds one the model cannot take (beyond the head, fc_norm and norm above).
    """
    state = _load_model_state(path, "cpu")
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    encoder = {k: v for k, v in encoder.items() if not k.startswith("head.")}
    result = model.load_state_dict(encoder, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_MAY_BE_MISSING)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(_MAY_BE_UNUSED)]
    if missing or unexpected:
        raise ValueError(
            f"MGP checkpoint {path} does not fit the model: "
            + "; ".join(
                f"{what} {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''} ({len(keys)})"
                for what, keys in (("missing", missing), ("unexpected", unexpected))
                if keys
            )
        )
