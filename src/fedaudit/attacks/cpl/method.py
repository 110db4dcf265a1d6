"""CPL's recipe for the gradient-inversion engine (Wei et al. 2020, ESORICS: §4.1 patterned
initialisation, §4.2 label restoration before image reconstruction, L-BFGS on the L2 gradient
distance)."""

from __future__ import annotations

from typing import Any

from fedaudit.attacks.gradient_inversion import Method


def build(settings: dict[str, Any], task: str, suite: dict[str, Any], batch_size: int = 1
          ) -> Method:
    """Classifier: the label restored from the last layer's gradient (iDLG's rule, which CPL's
    §4.2 uses), then fixed. sCT: there is no label to restore; the CT target is the suite's
    ``sct_target`` (known to the attacker, or optimised jointly)."""
    target = "extracted" if task == "classification" else suite["sct_target"]
    return Method("cpl", objective="l2", init="pattern", pattern=settings["pattern"],
                  optimizer="lbfgs", lr=1.0, evaluations=suite["evaluations"][task],
                  target=target)
