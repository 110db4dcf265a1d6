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

from fedaudit.catalog import DefenseSpec, NoiseFamily

DEFENSE = DefenseSpec(
    name="dp_fedavg", title="DP-FedAvg (client-side noise)", folder=Path(__file__).parent,
    client_mods="fedaudit.defenses.noise_mod:client_mods",
    noise=NoiseFamily(level_key="noise_multiplier", prefix="dp-z", symbol="z",
                      label="DP-FedAvg", rank=2, perturb=".noise:perturb",
                      update_std=".noise:update_std", budget=".budget:budget_fields",
                      budget_text=".budget:budget_text", budget_note=".budget:budget_note",
                      grid_help="DP-FedAvg noise multipliers z (noise std z·clip per coordinate), "
                      "one scenario each, named dp-z<z>; clip and delta from "
                      "defenses.dp_fedavg (McMahan et al. 2018, Alg. 1, noised on the "
                      "client).",
                      note="DP-FedAvg: every client clips its update to L2 norm C and adds "
                      "N(0, (zC)²) itself (McMahan et al. 2018, Alg. 1, noised on the client "
                      "because the attacker is the server); ε at δ = {delta} from "
                      "dp-accounting's RDP accountant, user level (one hospital's whole data), "
                      "every client in every round, over the rounds each federation ran, for "
                      "two adjacencies: add/remove one hospital (sensitivity C) and replace one "
                      "hospital (sensitivity 2C, what a fixed, known set of hospitals needs)."))
