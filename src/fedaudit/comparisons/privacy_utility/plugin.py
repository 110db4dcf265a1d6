"""The privacy-utility comparison of the noise defenses (paper 003 §V, Table III): one row per
noise level of every noise family beside the federation without noise it is read against; the
table, the figure (utility against attack success) and one finding per family."""

from pathlib import Path

from fedaudit.catalog import ComparisonSpec, TableSpec

COMPARISON = ComparisonSpec(
    name="privacy_utility", title="Noise defenses: privacy against utility",
    folder=Path(__file__).parent,
    # the attacks whose rules its own read (their summaries, their scenario lists)
    requires=("gradinv", "fedmia", "noise_replay", "privacy_audit"),
    # what it reads of each summary (the rule's inputs), checked before the table is built
    reads={"gradinv": ("scenario", "target", "network", "method", "batch_size", "success",
                       "ssim", "null_ssim"),
           "quality": ("scenario", "center", "n", "mae_mean", "ssim_mean"),
           "classifier": ("scenario", "split", "center", "accuracy",
                          "majority_class_accuracy"),
           "fedmia": ("scenario", "view", "unit", "level", "target", "test", "score", "auc",
                      "ci_low", "ci_high"),
           # the noise replay's summary reads the rest (fedaudit.attacks.noise_replay.report)
           "replay": ("scenario", "attacked", "recovered", "removed_share"),
           # and the privacy audit's table (fedaudit.attacks.privacy_audit.report)
           "audit": ("scenario", "epsilon_lower_bound", "epsilon_claimed", "status",
                     "canaries", "ceiling")},
    tables=(TableSpec(name="privacy_utility",
                      paper="paper 003, Table III",
                      description=("per noise level: ε with its adjacency and unit, the ε "
                                   "measured in one run (a lower bound), the server's noise "
                                   "replay, sCT MAE / SSIM, classifier accuracy, FedMIA "
                                   "AUC, each attack's classifier ASR and UNet SSIM"),
                      category="Privacy",
                      subcategory="Noise defenses: privacy-utility",
                      build=".report:build_privacy_utility_table",
                      findings=".report:defense_findings", order=23),))
