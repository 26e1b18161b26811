"""Published numbers (top-1 %, from the authors' repositories: the READMEs of LiVT, DeiT-LT,
MiSLAS, Balanced Softmax, SADE and PaCo, RIDE's MODEL_ZOO.md), shown as reference rows in
report tables next to ltbench's own. A source that gives only the overall accuracy has no
group cells (``None``, printed as a dash). Each row's comment names its source; a method whose
numbers were found in none (LADE, weight balancing, BCL on ResNets) has no row
(docs/methods.md).

Both papers pick the best epoch on the test set, and DeiT-LT's group columns are its
index-boundary groups (head / mid / tail), not the 100 / 20 thresholds; the rows say so.
A published row is shown only for a method, dataset and setting some reported run has, and
ltbench's difference only where the report compares like with like (the ``paper`` budget,
the paper's group convention, the paper's model selection, verified data); otherwise the
row says it is not comparable and why. ltbench never picks an epoch on test, so a row of a
paper that did is never given a difference.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    method: str  # the ltbench method it corresponds to
    paper: str
    dataset: str
    setting: str  # "rho=100", "224", ...
    many: float | None
    medium: float | None
    few: float | None
    all: float
    convention: str  # how the paper formed its groups
    selection: str = "best_test"  # how the paper chose its epoch: best_test, best_val or last

    @property
    def selection_text(self) -> str:
        return SELECTION_TEXT.get(self.selection, self.selection)


#: How a published number's epoch was chosen, in words. A difference to ltbench's mean is
#: printed only where the report selects the same way; ltbench never selects on test.
SELECTION_TEXT = {"best_test": "best on test", "best_val": "best on validation", "last": "last epoch"}


PUBLISHED = (
    Published("livt", "LiVT (ViT-B)", "imagenet_lt", "224", 73.6, 56.4, 41.0, 60.9, "threshold"),
    Published("livt", "LiVT (ViT-B)", "imagenet_lt", "384", 76.4, 59.7, 42.7, 63.8, "threshold"),
    Published("livt", "LiVT (ViT-B)", "inat2018", "224", 78.9, 76.5, 74.8, 76.1, "threshold"),
    Published("livt", "LiVT (ViT-B)", "inat2018", "384", 83.2, 81.5, 79.7, 81.0, "threshold"),
    Published("deit_lt", "DeiT-LT (DeiT-B)", "cifar10_lt", "rho=100", 94.5, 84.1, 85.0, 87.5, "index"),
    Published("deit_lt", "DeiT-LT (DeiT-B)", "cifar10_lt", "rho=50", 94.9, 87.0, 88.6, 89.8, "index"),
    Published("deit_lt", "DeiT-LT (DeiT-B)", "cifar100_lt", "rho=100", 72.8, 55.4, 31.4, 55.6, "index"),
    Published("deit_lt", "DeiT-LT (DeiT-B)", "cifar100_lt", "rho=50", 74.8, 60.3, 43.1, 60.5, "index"),
    Published("deit_lt", "DeiT-LT (DeiT-B)", "imagenet_lt", "224", 66.6, 58.3, 40.0, 59.1, "index"),
    Published("deit_lt", "DeiT-LT (DeiT-B)", "inat2018", "224", 70.3, 75.2, 76.2, 75.1, "index"),
    # MiSLAS's README (stage 2; its code keeps the best epoch on the evaluation set, the test
    # set on CIFAR-LT and iNat18, and reports no group accuracies there).
    Published("cnn_mislas", "MiSLAS (ResNet-32)", "cifar10_lt", "rho=100", None, None, None, 82.5, "threshold"),
    Published("cnn_mislas", "MiSLAS (ResNet-32)", "cifar100_lt", "rho=100", None, None, None, 47.0, "threshold"),
    Published("cnn_mislas", "MiSLAS (ResNet-50)", "imagenet_lt", "224", None, None, None, 52.7, "threshold"),
    Published("cnn_mislas", "MiSLAS (ResNet-50)", "inat2018", "224", None, None, None, 71.6, "threshold"),
    # Balanced Softmax, end-to-end: jiawei-ren/BalancedMetaSoftmax-Classification README (which
    # says it may differ slightly from the paper); imbalance 200 only there, no rho=100 or
    # ResNet-50 row. Their code keeps the best epoch on "val", on CIFAR-LT the test set.
    Published(
        "cnn_balanced_softmax",
        "Balanced Softmax (ResNet-32)",
        "cifar10_lt",
        "rho=200",
        None,
        None,
        None,
        79.8,
        "threshold",
    ),
    Published(
        "cnn_balanced_softmax",
        "Balanced Softmax (ResNet-32)",
        "cifar100_lt",
        "rho=200",
        None,
        None,
        None,
        46.7,
        "threshold",
    ),
    # RIDE, 3 experts, without distillation, with the expert router (ltbench's is routing-free):
    # frank-xwang/RIDE-LongTailRecognition MODEL_ZOO.md (its ImageNet-LT model is a ResNeXt-50,
    # left out). Groups: >100 / 20-100 / <20 training images (test.py); the best epoch on "val",
    # which is the test set on CIFAR-100-LT and the evaluation set on iNat18.
    Published("cnn_ride", "RIDE (ResNet-32)", "cifar100_lt", "rho=100", 67.0, 49.9, 25.7, 48.6, "threshold"),
    Published("cnn_ride", "RIDE (ResNet-50)", "inat2018", "224", 70.2, 71.2, 71.6, 71.2, "threshold"),
    # SADE with its test-time aggregation on the uniform test set (ltbench's cnn_sade averages the
    # experts): Vanint/SADE-AgnosticLT README (its ImageNet-LT model is a ResNeXt-50, left out);
    # the best epoch on "val", the test set on CIFAR-100-LT.
    Published("cnn_sade", "SADE (ResNet-32)", "cifar100_lt", "rho=100", None, None, None, 49.8, "threshold"),
    Published("cnn_sade", "SADE (ResNet-50)", "inat2018", "224", None, None, None, 72.9, "threshold"),
    # PaCo: dvlab-research/Parametric-Contrastive-Learning README (no CIFAR numbers there);
    # paco_lt.py keeps the best epoch on the test set.
    Published("cnn_paco", "PaCo (ResNet-50)", "imagenet_lt", "224", None, None, None, 57.0, "threshold"),
    Published("cnn_paco", "PaCo (ResNet-50)", "inat2018", "224", None, None, None, 73.2, "threshold"),
    # GCL: Keke921/GCLLoss README, stage 2 (its CIFAR numbers are not in the README); its
    # cifar_train_classifier.py keeps the best epoch on the evaluation set (the test set).
    Published("cnn_gcl", "GCL (ResNet-50)", "imagenet_lt", "224", None, None, None, 54.9, "threshold"),
    Published("cnn_gcl", "GCL (ResNet-50)", "inat2018", "224", None, None, None, 71.6, "threshold"),
)


def setting_of(record: dict) -> str:
    """The published setting a run corresponds to: ``rho=R`` for CIFAR-LT, else the input size."""
    cfg = record.get("config") or {}
    data, train = cfg.get("data") or {}, cfg.get("train") or {}
    if record.get("dataset", "").startswith("cifar"):
        return f"rho={(data.get('longtail') or {}).get('rho', 0):g}"
    return str(train.get("img_size") or data.get("image_size") or "")


def references_for(records) -> list[tuple[Published, str]]:
    """Published rows of the methods, datasets and settings of ``records``, with each budget they ran under.

    Whether a row is comparable (the ``paper`` budget, the paper's group convention) is the
    report's to say: ``reports.tables._Grid.reference_rows`` prints a difference only then.
    """
    blocks = {(r["method"], r["dataset"], setting_of(r), r.get("budget")) for r in records}
    return list(
        dict.fromkeys(
            (p, budget)
            for p in PUBLISHED
            for (method, dataset, setting, budget) in sorted(blocks, key=str)
            if p.method == method and p.dataset == dataset and p.setting == setting
        )
    )
