"""iDLG's recipe for the gradient-inversion engine (Zhao et al. 2020, §3.1: label extraction,
then DLG's L-BFGS on the L2 gradient distance from a uniform dummy)."""

from __future__ import annotations

from typing import Any

from fedaudit.attacks.gradient_inversion import Method

# Why iDLG becomes joint-target DLG on the UNet (the suite's table prints it).
NOT_APPLICABLE = ("iDLG's label extraction needs cross-entropy on a last fully connected layer; "
                  "the UNet regresses a CT image with L1, so joint-target DLG (dummy MR and "
                  "dummy CT) runs instead")


def build(settings: dict[str, Any], task: str, suite: dict[str, Any], batch_size: int = 1
          ) -> Method:
    """``batch_size``: the suite runs this method at batch 1 only (``batch_sizes`` is
    Inverting Gradients' setting)."""
    target = "extracted" if task == "classification" else "joint"
    return Method("idlg", objective="l2", init="uniform", optimizer="lbfgs", lr=1.0,
                  evaluations=suite["evaluations"][task], target=target)
