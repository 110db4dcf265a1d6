"""CPL (Wei et al., "A Framework for Evaluating Gradient Leakage Attacks in Federated Learning",
ESORICS 2020), one of paper 003's four attacks: L-BFGS gradient matching from a *patterned*
initial dummy (a small random tile repeated over the image, §4.1), with the label restored
from the last layer's gradient first (§4.2). Run by the gradient-inversion suite
(:mod:`fedaudit.attacks.gradinv`), which owns the jobs and tables; this folder holds its recipe
(``method.py``) and settings (``schema.yaml``)."""

from pathlib import Path

from fedaudit.catalog import AttackSpec

ATTACK = AttackSpec(name="cpl", title="CPL", view="server_log", folder=Path(__file__).parent,
                    method=".method:build")
