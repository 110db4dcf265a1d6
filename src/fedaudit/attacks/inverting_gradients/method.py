"""Inverting Gradients' recipe for the gradient-inversion engine (Geiping et al. 2020, Eq. 4:
cosine gradient distance + α·TV, Adam on the signed gradient with step decay, box constraint
[0, 1], restarts)."""

from __future__ import annotations

from typing import Any

from fedaudit.attacks.gradient_inversion import Method


def build(settings: dict[str, Any], task: str, suite: dict[str, Any], batch_size: int = 1
          ) -> Method:
    """Classifier labels: extracted from the gradient at batch 1 (iDLG's rule), known to the
    attacker for batches (Geiping et al. assume known labels there)."""
    if task == "classification":
        target = "extracted" if batch_size == 1 else "known"
    else:
        target = suite["sct_target"]
    return Method("inverting_gradients", objective="cosine", tv=settings["tv"],
                  optimizer="signed_adam", lr=settings["lr"], restarts=settings["restarts"],
                  box=True, evaluations=suite["evaluations"][task], target=target)
