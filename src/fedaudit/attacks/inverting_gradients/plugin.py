"""Inverting Gradients (Geiping, Bauermeister, Dröge and Moeller, NeurIPS 2020), one of paper
003's four attacks: cosine distance between gradients plus a total-variation prior, Adam on the
signed gradient, the image kept in [0, 1], several restarts; it also attacks batches of more
than one image. Run by :mod:`fedaudit.attacks.gradinv` on the UNet and the classifier."""

from pathlib import Path

from fedaudit.catalog import AttackSpec

ATTACK = AttackSpec(name="inverting_gradients", title="Inverting Gradients", view="server_log",
                    folder=Path(__file__).parent, method=".method:build")
