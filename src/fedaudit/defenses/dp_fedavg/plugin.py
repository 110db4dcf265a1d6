"""DP-FedAvg as a defense, noised on the client: each client clips its update to L2 norm C and
adds Gaussian noise of std z·C before sending it (McMahan et al. 2018, "Learning Differentially
Private Recurrent Language Models", Alg. 1's ClipFn and Gaussian mechanism; transform:
:func:`fedaudit.defenses.update_noise.perturb_update`, ε: :mod:`.budget`).

Why on the client: our attacker is the honest-but-curious server, which holds every individual
update. Flower's ``DifferentialPrivacyServerSideFixedClipping`` clips and noises at the server,
and ``DifferentialPrivacyClientSideFixedClipping`` has the clients clip but still adds the noise
at the server, to the aggregate: either way the server sees each clean (at most clipped) update,
so neither protects an individual update from the server. Here the noise is added before the
update leaves the hospital."""

from pathlib import Path

from fedaudit.catalog import DefenseSpec

DEFENSE = DefenseSpec(
    name="dp_fedavg", title="DP-FedAvg (client-side noise)", folder=Path(__file__).parent,
    client_mods="fedaudit.defenses.noise_mod:dp_fedavg_mods")
