"""Attacks on the federation, one module per attack (paper 000, "Experimental Scenarios").

* :mod:`fedaudit.attacks.poisoning` -- data poisoning by a malicious client (Eq. 2).
* :mod:`fedaudit.attacks.dlg` -- DLG gradient inversion of a client's shared gradient
  ("Gradient Inversion", Fig. 2), with a BatchNorm-free positive control.
* :mod:`fedaudit.attacks.fedmia` -- FedMIA membership inference from the server log
  ("Membership Inference", Fig. 3); :mod:`fedaudit.attacks.fedmia_run` runs it on a scenario.
"""
