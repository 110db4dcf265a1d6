"""iDLG (Zhao, Mopuri and Bilen, "iDLG: Improved Deep Leakage from Gradients", 2020), one of
paper 003's four attacks: the label of one sample is read off the last fully connected layer's
gradient under cross-entropy (§3.1), then DLG runs with it fixed. The trick needs a classifier;
on the sCT UNet (L1 regression onto a CT image) it does not apply and the suite runs
joint-target DLG under this name, saying so in its table. Run by
:mod:`fedaudit.attacks.gradinv`."""

from pathlib import Path

from fedaudit.catalog import AttackSpec

ATTACK = AttackSpec(name="idlg", title="iDLG", view="server_log", folder=Path(__file__).parent,
                    method=".method:build")
