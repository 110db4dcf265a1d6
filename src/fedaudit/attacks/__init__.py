"""The threats FedAudit audits, one folder each, registered in :mod:`fedaudit.catalog`
(paper 000, "Experimental Scenarios"):

* :mod:`fedaudit.attacks.poisoning` -- data poisoning by a malicious client (Eq. 2), a client
  attack during training;
* :mod:`fedaudit.attacks.dlg` -- DLG gradient inversion of a client's shared gradient
  ("Gradient Inversion", Fig. 2), with a BatchNorm-free positive control;
* :mod:`fedaudit.attacks.fedmia` -- FedMIA membership inference from the server log
  ("Membership Inference", Fig. 3).

Shared by attacks: what an attacker may hold (:mod:`fedaudit.attacks.views`) and the
patient-clustered membership statistics (:mod:`fedaudit.attacks.membership_stats`).
"""
