"""DLG's recipe for the gradient-inversion suite (:mod:`fedaudit.attacks.gradinv`): Zhu et al.
2019, Algorithm 1 -- a uniform dummy image and, on the classifier, a dummy soft label, L-BFGS
on the L2 gradient distance. The suite runs it on the same slices and budget as CPL, iDLG and
Inverting Gradients; DLG's own job (:mod:`.steps`, paper 000 Fig. 2) keeps paper 000's
settings."""

from __future__ import annotations

from typing import Any

from fedaudit.attacks.gradient_inversion import Method


def build(settings: dict[str, Any], task: str, suite: dict[str, Any], batch_size: int = 1
          ) -> Method:
    """``batch_size``: the suite runs this method at batch 1 only (``batch_sizes`` is
    Inverting Gradients' setting)."""
    target = "joint" if task == "classification" else suite["sct_target"]
    return Method("dlg", objective="l2", init="uniform", optimizer="lbfgs", lr=1.0,
                  evaluations=suite["evaluations"][task], target=target)
