"""The Snakemake DAG end to end: planning, lint, SLURM profile, tiny run, caching, bad patients."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from conftest import REPO, copy_checkout, run_snakemake
from fedaudit.io import quarantine_record
from fedaudit.report.verdict import data_quality_finding

pytestmark = pytest.mark.workflow

TINY = {
    "seed": 3,
    # a second training seed for the federations the SecAgg+, FedMIA and poisoning lines read
    "seeds": 2,
    "centers": {
        "A": {"role": "train", "source": {"type": "demo", "patients": 3}},
        "B": {"role": "train", "source": {"type": "demo", "patients": 3}},
        "E": {"role": "external", "source": {"type": "demo", "patients": 1}},
    },
    "demo": {"resolution_scale": 5.0},
    "preprocess": {"threads": 1, "n4": {"shrink": 2, "iterations": [20, 20]},
                   "cube": {"size": 32}},
    # two rounds of a tiny network, one clean and one poisoned federation
    "train": {"rounds": 2, "model": {"base": 2}, "max_slices_per_volume": 4,
              "val_max_slices": 4, "lr": 0.001},
    "scenarios": {"unpoisoned": ["baseline", "secagg"],
                  "poisoning": {"centers": ["A"], "gammas": [1.0], "aggregations": ["fedavg"]},
                  # the FedMIA control: trained and attacked, never evaluated
                  "membership_control": {"enabled": True, "name": "memo", "train": {
                      "max_train_patients": 1, "optimizer": "sgd", "lr": 0.05,
                      "local_epochs": 2}},
                  # one privacy-utility point: DP-FedAvg noised on the clients
                  "noise": {"dp_fedavg": [0.5]},
                  "replicated": ["baseline", "secagg", "poison-A-g1.0-fedavg"]},
    # how the jobs run: one thread each, on the CPU (re-runs nothing when changed)
    "execution": {"train": {"threads": 1, "device": "cpu"}, "evaluate": {"threads": 1},
                  "attacks": {"threads": 1, "device": "cpu"}},
    # FedMIA reads the last round of the audited federations and every round the control logs
    "attacks": {"fedmia": {"slices_per_orientation": 2, "rounds": "last", "batch_size": 2},
                "dlg": {"iterations": 6, "snapshots": 3, "control_hidden": 8},
                "trap_weights": {"batch_sizes": [2, 4], "clients": [None], "neurons": 64,
                                 "inits": ["trap"], "volumes": {"batch_sizes": [8]},
                                 "local": {"batch_sizes": [2]}},
                # two of the suite's four methods: iDLG reads the label off the gradient,
                # Inverting Gradients runs at batch 2 (each method's own tests are in its folder)
                "gradinv": {"methods": ["idlg", "inverting_gradients"],
                            "slices": {"translation": 1, "classification": 1},
                            "evaluations": {"translation": 4, "classification": 20},
                            "classifier": {"rounds": 1, "local_epochs": 1}},
                "inverting_gradients": {"batch_sizes": [1, 2]},
                # paper 004's evasion: 2 slices, two ε, 2 and 4 steps, one α
                "evasion": {"slices": 2, "batch_size": 2, "epsilons": [0.03, 0.1],
                            "alpha_fractions": [0.25], "steps": [2, 4],
                            "targeted": {"min_voxels": 2}},
                # the one-run privacy audit: baseline (the control) and dp-z0.5
                "privacy_audit": {"canaries": 60, "unclaimed_canaries": 40}},
}


def _write_config(workdir: Path, cfg: dict, name: str = "tiny.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _job_counts(stdout: str) -> dict[str, int]:
    """Parse the 'Job stats' table Snakemake prints for a (dry) run."""
    counts = {}
    block = stdout.split("Job stats:")[-1]
    for line in block.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_default_config_plans_every_job(workdir: Path) -> None:
    res = run_snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "config.yaml"))
    assert res.returncode == 0, res.stderr
    counts = _job_counts(res.stdout)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    n_pat = sum(c["source"]["patients"] for c in cfg["centers"].values())
    n_centers = len(cfg["centers"])
    per_patient = ("register", "head_mask", "n4", "finalize", "qc")
    assert {r: counts.get(r) for r in per_patient} == dict.fromkeys(per_patient, n_pat)
    assert counts["demo_patient"] + counts["demo_patient_with_mask"] == n_pat
    assert counts["splits"] == n_centers and counts["data_montage"] == n_centers
    assert counts["qc_table"] == 1 and counts["all"] == 1
    # 3 unpoisoned + the largest center poisoned under FedAvg and FedMedian + 3 noise levels,
    # each trained and evaluated once, beside one constant predictor; the membership control
    # is trained and attacked, never evaluated; the second training seed (seeds: 2) repeats the
    # five headline federations and the control
    assert counts["evaluate"] == 8 + 5 and counts["train"] == 9 + 6
    # baseline, secagg, the control, the noise levels; the second seed's baseline, secagg and
    # control
    assert counts["fedmia_measure"] == 6 + 3
    # paper 003's suite: baseline and the 3 noise levels x 2 targets x 4 methods
    assert counts["gradinv"] == 32 and counts["gradinv_classifier"] == 4
    # paper 004's evasion: baseline, FedMedian and the 3 noise levels
    assert counts["evasion"] == 5 and counts["evasion_summary"] == 1
    assert counts["eval_summary"] == counts["constant_predictor"] == 1
    # the full grid is one more config file away
    full = run_snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "config.yaml"),
                         str(REPO / "config" / "demo-full.yaml"))
    # (and the second seed's unpoisoned three and center A's γ = 1.0 pair)
    assert _job_counts(full.stdout)["evaluate"] == 27 + 3 + 5, full.stderr[-2000:]


def test_adding_krum_to_the_scenario_lists_needs_no_code(workdir: Path) -> None:
    """A registered aggregation rule is a scenario name and a grid entry by itself; its
    parameter is its own config key (aggregations.krum.f), travelling with its scenarios only."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["scenarios"]["unpoisoned"].append("krum")
    cfg["scenarios"]["poisoning"]["aggregations"].append("krum")
    cfg["aggregations"] = {"krum": {"f": 0}}  # four clients: Krum's n > 2f + 2 needs f = 0
    res = run_snakemake(workdir, "-n", "--configfile", str(_write_config(workdir, cfg, "k.yaml")),
                        "-p")
    assert res.returncode == 0, res.stderr[-2000:]
    counts = _job_counts(res.stdout)
    # and the second training seed's replicas: the 4 unpoisoned, the 3 poisoned, the control
    assert counts["train"] == 11 + 8 and counts["evaluate"] == 10 + 7
    for path in ("results/train/krum/model.pt", "results/train/poison-D-g1.0-krum/model.pt"):
        assert path in res.stdout
    cfg["aggregations"] = {"krum": {"f": 1}}
    bad = run_snakemake(workdir, "-n", "--configfile", str(_write_config(workdir, cfg, "k.yaml")))
    assert bad.returncode != 0
    assert "aggregation 'krum' needs n > 2f + 2 clients" in bad.stderr + bad.stdout


def test_lint_is_clean(workdir: Path) -> None:
    res = run_snakemake(workdir, "--lint", "--configfile", str(REPO / "config" / "config.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr


def test_an_excluded_patient_is_planned_nowhere(workdir: Path) -> None:
    """preprocess.exclude leaves a patient out before anything runs: no job makes, reads or
    attacks its volumes, and the QC record names it (qc_table's param)."""
    from fedaudit.data.centers import patient_id

    gone = patient_id("A", 1)
    cfg = json.loads(json.dumps(TINY))
    cfg["preprocess"]["exclude"] = [f"A/{gone}"]
    res = run_snakemake(workdir, "-n", "--configfile", str(_write_config(workdir, cfg)))
    assert res.returncode == 0, res.stderr[-2000:]
    counts = _job_counts(res.stdout)
    assert counts["demo_patient"] + counts.get("demo_patient_with_mask", 0) == 3 + 3 + 1 - 1
    assert f"/{gone}/" not in res.stdout and f"patient={gone}" not in res.stdout
    assert patient_id("A", 0) in res.stdout


def test_rule_files_are_snakefmt_clean() -> None:
    """Every rules file (the Snakefile, workflow/rules/, the plugins' and the test plugins')
    is formatted as snakefmt writes it, with the project's settings ([tool.snakefmt] in
    pyproject.toml: line length 100, directives in the order written)."""
    from conftest import BIN

    res = subprocess.run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules",
                          "src/fedaudit", "tests/plugins"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "would be left unchanged" in res.stderr + res.stdout


def test_typo_in_config_stops_the_run(workdir: Path) -> None:
    cfg = json.loads(json.dumps(TINY))
    cfg["preprocess"]["cube"]["sise"] = 32
    res = run_snakemake(workdir, "-n", "--configfile", str(_write_config(workdir, cfg)))
    assert res.returncode != 0
    assert "unknown config key 'preprocess.cube.sise'" in res.stderr + res.stdout


def test_nested_command_line_overrides_take_the_schema_type(workdir: Path) -> None:
    """--config train='{rounds: 5}' reaches the config as {'rounds': '5'} (Snakemake keeps
    nested values as strings): validated against the schema it becomes the integer 5."""
    cfg = _write_config(workdir, TINY)
    res = run_snakemake(workdir, "-n", "--configfile", str(cfg), "--config",
                        "train={rounds: 5, lr: 2e-3}", "attacks={dlg: {iterations: 10}}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert _job_counts(res.stdout)["train"] >= 1
    bad = run_snakemake(workdir, "-n", "--configfile", str(cfg), "--config",
                        "train={rounds: five}")
    assert bad.returncode != 0
    assert "config key 'train.rounds': 'five' is not of type 'integer'" in bad.stderr + bad.stdout


def test_the_workflow_profile_overrides_nothing_of_the_slurm_profile() -> None:
    """profiles/default is loaded as the workflow profile on top of any --profile, key by key:
    a key the SLURM profile also sets (latency-wait 5 against 60 did) would silently win."""
    default = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    slurm = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    clash = {k: (default[k], slurm[k]) for k in set(default) & set(slurm)
             if default[k] != slurm[k]}
    assert not clash, f"profiles/default overrides profiles/slurm: {clash}"
    # threads that change numbers (N4) are the config's, not the executor's
    assert "n4" not in slurm.get("set-threads", {})


def test_slurm_profile_dry_run(workdir: Path) -> None:
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    res = run_snakemake(workdir, "--list-rules", "--configfile",
                        str(REPO / "config" / "config.yaml"))
    assert res.returncode == 0, res.stderr
    rules = {line.split()[0] for line in res.stdout.splitlines()
             if line.strip() and not line.startswith("Using ")}
    assert {"train", "evaluate", "dlg", "fedmia_measure"} <= rules
    job_rules = rules - {"all", "data_all", "preprocess_all", "train_all", "evaluate_all",
                         "attacks_all", "report_all"}
    missing = job_rules - set(profile["set-resources"])
    assert not missing, f"rules without SLURM resources: {missing}"
    for rule in job_rules:
        assert {"mem_mb", "runtime"} <= set(profile["set-resources"][rule]), rule
    res = run_snakemake(workdir, "-n", "--profile", str(REPO / "profiles" / "slurm"),
                        "--configfile", str(_write_config(workdir, TINY)))
    assert res.returncode == 0, res.stderr
    assert _job_counts(res.stdout)["register"] == 7


def _planned(res: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts of a dry run; {} when it planned nothing."""
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    return {} if "Nothing to be done" in out else _job_counts(out)


def _check_cache(ck: Path, cfg: dict) -> None:
    """The cache is a promise: a config change plans exactly the jobs that read the value."""
    def plan(change) -> dict[str, int]:
        changed = json.loads(json.dumps(cfg))
        change(changed)
        return _planned(run_snakemake(ck, "-n", "--configfile",
                                      str(_write_config(ck, changed, "changed.yaml")),
                                      snakefile=ck / "Snakefile"))

    assert plan(lambda c: None) == {}
    # the learning rate: every scenario re-trains, nothing upstream of training re-runs
    # (the membership control sets its own lr, so it is not among them)
    counts = plan(lambda c: c["train"].update(lr=0.002))
    assert counts["train"] == 7 and counts["evaluate"] == 7, counts  # 3 of them seed 4's
    # ... and the UNet attacks of the suite (2 scenarios x 2 methods), not its classifiers
    assert counts["gradinv"] == 4 and "gradinv_classifier" not in counts, counts
    # the control's own budget: its training and its FedMIA jobs, no evaluation
    counts = plan(lambda c: c["scenarios"]["membership_control"]["train"].update(local_epochs=3))
    assert counts["train"] == 1 and counts["fedmia_measure"] == 1, counts
    assert "evaluate" not in counts and "dlg" not in counts, counts
    upstream = {"demo_patient", "register", "head_mask", "n4", "finalize", "qc", "qc_table",
                "splits", "data_montage", "constant_predictor"}
    assert not upstream & set(counts), counts
    # a DLG setting: the DLG jobs and the report items made from them, nothing else
    counts = plan(lambda c: c["attacks"]["dlg"].update(iterations=5))
    assert counts.pop("dlg") == 4, counts  # 2 centers x 2 optimisers
    assert set(counts) == {"dlg_summary", "figure_dlg", "table_inversion", "front_page",
                           "table_runtimes", "results_page", "all"}
    # the suite's classifier: its federations and the attacks on it, not the UNet's
    counts = plan(lambda c: c["attacks"]["gradinv"].update(classifier={"lr": 0.1}))
    assert counts.pop("gradinv_classifier") == 2 and counts.pop("gradinv") == 4, counts
    assert set(counts) == {"gradinv_summary", "table_inversion_suite", "table_privacy_utility",
                           "table_inversion_classifier", "figure_privacy_utility",
                           "front_page", "table_runtimes", "results_page", "all"}, counts
    # a DP level re-runs its own federation and what reads it, nothing of the baseline
    counts = plan(lambda c: c.update(defenses={"dp_fedavg": {"clip": 2.0}}))
    assert counts["train"] == 1 and counts["gradinv_classifier"] == 1, counts
    assert counts["gradinv"] == 4 and "dlg" not in counts, counts
    # the local mode's own trap-weight sweep re-runs its two jobs, not the gradient mode's,
    # nor the 3-D attack or the defenses (which read the first init of the main sweep)
    counts = plan(lambda c: c["attacks"]["trap_weights"]["local"].update(batch_sizes=[4]))
    assert counts.pop("trap_weights") == 2, counts  # baseline and secagg, local mode
    # (the figure shows the first mode's examples)
    assert set(counts) == {"table_trap_weights", "front_page", "table_runtimes",
                           "results_page", "all"}, counts
    # one optimiser's own setting re-runs only its jobs
    counts = plan(lambda c: c["attacks"]["dlg"].update(lbfgs={"lr": 0.05}))
    assert counts["dlg"] == 2 and "train" not in counts, counts
    # how, not what: the execution section (threads, workers, backend, devices) re-runs nothing
    assert plan(lambda c: c.update(execution={
        "train": {"threads": 2, "num_workers": 1, "backend": "ray", "device": "auto",
                  "keep_checkpoints": True},
        "evaluate": {"threads": 2}, "attacks": {"threads": 2, "device": "auto"}})) == {}
    # N4's thread count changes its volumes (ITK's threaded fit): a study key, so it re-runs N4
    # for every patient (and what reads the volumes), the registration not
    counts = plan(lambda c: c["preprocess"].update(threads=2))
    assert counts["n4"] == 7 and "register" not in counts, counts


def _check_code(ck: Path, cfg: Path) -> None:
    """The code is part of the cache (fedaudit.code_digest): a change to the training code
    plans the training jobs and what reads them, a docstring change plans nothing; every job ran
    this checkout's FedAudit, not the virtualenv's editable install of another clone."""
    def plan() -> dict[str, int]:
        return _planned(run_snakemake(ck, "-n", "--configfile", str(cfg),
                                      snakefile=ck / "Snakefile"))

    assert f"FedAudit 0.1.0 from {ck / 'src' / 'fedaudit'}" in (
        ck / "results/logs/train/baseline.log").read_text()
    local = ck / "src/fedaudit/federation/local.py"
    text = local.read_text()
    local.write_text(text + "\n_A_CODE_CHANGE = 1\n")
    counts = plan()
    local.write_text(text)
    # every federation (4 scenarios, the control, the suite's 2 classifiers) and what reads them
    # (and the second seed's baseline, secagg and poisoned federation)
    assert counts["train"] == 8 and counts["gradinv_classifier"] == 2, counts
    assert counts["evaluate"] == 7 and counts["fedmia_measure"] == 6, counts
    assert not {"demo_patient", "register", "n4", "finalize", "splits"} & set(counts), counts
    roc = ck / "src/fedaudit/attacks/fedmia/figures.py"
    text = roc.read_text()
    roc.write_text('"""Another docstring."""\n# and a comment\n' + text.split('"""', 2)[2])
    assert plan() == {}
    roc.write_text(text)


def _check_forced_retrain(ck: Path, cfg: Path) -> None:
    """A forced re-run trains anew (the checkpoints were removed once the model was
    published), to the same model: same code, same seed, same numbers."""
    from fedaudit.models.store import load_model

    def weights_digest() -> str:
        h = hashlib.sha256()
        for name, t in load_model(model).state_dict().items():
            h.update(name.encode() + t.numpy().tobytes())
        return h.hexdigest()

    model = ck / "results/train/baseline/model.pt"
    before = weights_digest()
    assert not (ck / "results/train/baseline/checkpoints").exists()
    forced = run_snakemake(ck, str(model.relative_to(ck)), "--forcerun", "train", "--cores", "2",
                           "--configfile", str(cfg), snakefile=ck / "Snakefile")
    assert forced.returncode == 0, forced.stderr[-2000:]
    log = (ck / "results/logs/train/baseline.log").read_text()
    assert "rounds 1-2 of 2" in log and "nothing left to train" not in log, log[-2000:]
    assert weights_digest() == before


@pytest.mark.starts_first
def test_tiny_pipeline_caching_and_a_moved_checkout(tmp_path: Path) -> None:
    ck = copy_checkout(tmp_path / "checkout")
    cfg = _write_config(ck, TINY)
    # every figure of the pipeline is checked for legible text as it is saved (a job whose
    # figure has overlapping labels fails, naming them: fedaudit.plots.style.save)
    res = run_snakemake(ck, "--cores", "2", "--configfile", str(cfg), snakefile=ck / "Snakefile",
                        env={"FEDAUDIT_CHECK_FIGURES": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    workdir = ck
    # each figure's vector PDF beside its PNG
    pngs = sorted((ck / "results").rglob("*.png"))
    assert pngs and all(p.with_suffix(".pdf").is_file() for p in pngs), [
        str(p) for p in pngs if not p.with_suffix(".pdf").is_file()][:5]

    patients = {"A": ["1BA001", "1BA002", "1BA003"], "B": ["1BB001", "1BB002", "1BB003"],
                "E": ["1BE001"]}
    for center, pids in patients.items():
        assert (workdir / f"results/data/montage/{center}.png").stat().st_size > 10_000
        for pid in pids:
            base = workdir / f"results/preprocessed/{center}/{pid}"
            mr = sitk.ReadImage(str(base / "mr.nii.gz"))
            ct = sitk.GetArrayFromImage(sitk.ReadImage(str(base / "ct.nii.gz")))
            mask = sitk.GetArrayFromImage(sitk.ReadImage(str(base / "mask.nii.gz"))) > 0
            assert mr.GetSize() == (32, 32, 32)
            mr_a = sitk.GetArrayFromImage(mr)
            # normalised to [0, 1] before resampling (paper order), so interpolation may lower
            # the maximum a little but never leaves [0, 1]
            assert mr_a.min() == 0.0 and 0.7 < mr_a.max() <= 1.0
            assert np.all(ct[~mask] == -1000.0) and np.all(mr_a[~mask] == 0.0)
            # B's demo scanner has the largest field of view, so its head is the smallest
            assert 0.02 < mask.mean() < 0.9, "head fills a sensible part of the cube"
            qc = json.loads((base / "qc.json").read_text())
            assert qc["mi_after"] < qc["mi_before"]
            assert (base / "qc.png").exists()
            assert (workdir / f"results/logs/register/{center}/{pid}.log").read_text()

    split_a = json.loads((workdir / "results/splits/A.json").read_text())
    assert sorted(split_a["train"] + split_a["val"] + split_a["test"]) == patients["A"]
    assert json.loads((workdir / "results/splits/E.json").read_text())["train"] == []
    table = (workdir / "results/preprocessed/qc.tsv").read_text().splitlines()
    assert len(table) == 1 + 7

    # training and evaluation: two rounds per scenario, an sCT and metrics per test patient
    split_b = json.loads((workdir / "results/splits/B.json").read_text())
    tests = [("A", split_a["test"][0]), ("B", split_b["test"][0]), ("E", "1BE001")]
    for scenario in ("baseline", "secagg", "poison-A-g1.0-fedavg"):
        hist = pd.read_csv(workdir / f"results/train/{scenario}/history.tsv", sep="\t")
        assert sorted(hist["round"]) == [1, 1, 2, 2] and set(hist["center"]) == {"A", "B"}
        update = "aggregate" if scenario == "secagg" else "A"
        assert (workdir / f"results/train/{scenario}/server_log/round_002/"
                          f"update_{update}.npz").exists()
        metrics = pd.read_csv(workdir / f"results/eval/{scenario}/metrics.csv")
        assert list(zip(metrics["center"], metrics["patient"], strict=True)) == tests
        assert np.isfinite(metrics[["mae", "psnr", "ssim"]].to_numpy()).all()
        assert (metrics["mae"] > 0).all() and (metrics["ssim"] <= 1).all()
        for center, pid in tests:
            sct = sitk.GetArrayFromImage(sitk.ReadImage(
                str(workdir / f"results/eval/{scenario}/sct/{center}/{pid}.nii.gz")))
            mask = sitk.GetArrayFromImage(sitk.ReadImage(
                str(workdir / f"results/preprocessed/{center}/{pid}/mask.nii.gz"))) > 0
            assert np.all(sct[~mask] == -1000.0) and sct.shape == mask.shape
    wil = pd.read_csv(workdir / "results/eval/wilcoxon.csv")
    # the second training seed's SecAgg+ federation is read against its own seed's baseline
    assert dict(zip(wil["scenario"], wil["reference"], strict=True)) == {
        "poison-A-g1.0-fedavg": "baseline", "secagg": "baseline", "dp-z0.5": "baseline",
        "secagg-seed4": "baseline-seed4", "poison-A-g1.0-fedavg-seed4": "baseline-seed4"}
    summary = pd.read_csv(workdir / "results/eval/summary.csv")
    # (scenarios + the second seed's three + the constant predictor) x evaluated centers
    assert len(summary) == 8 * 3
    # the constant predictor: one value everywhere in the head, the training patients' median
    value = json.loads((workdir / "results/eval/constant/constant.json").read_text())["value_hu"]
    def head_hu(folder: Path) -> np.ndarray:
        ct, mask = (sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{n}.nii.gz")))
                    for n in ("ct", "mask"))
        return ct[mask > 0]

    train_hu = np.concatenate([head_hu(workdir / f"results/preprocessed/{c}/{p}")
                               for c, sp in (("A", split_a), ("B", split_b)) for p in sp["train"]])
    assert value == pytest.approx(float(np.median(train_hu)))
    const = summary[summary["scenario"] == "constant"].set_index("center")
    base = summary[summary["scenario"] == "baseline"].set_index("center")
    assert np.allclose(base["mae_vs_constant"], base["mae_mean"] / const["mae_mean"])
    hist = pd.read_csv(workdir / "results/train/baseline/history.tsv", sep="\t")
    assert (hist["val_mae_constant"] > 0).all()
    _check_attacks(workdir, split_a, split_b)
    assert (workdir / "results/logs/train/baseline.log").read_text().count("round 2/2 done")

    _check_cache(ck, TINY)
    _check_code(ck, cfg)
    # The checkout moved to another folder (results and all): nothing to re-run.
    moved = ck.rename(tmp_path / "moved")
    cfg = moved / cfg.name
    assert _planned(run_snakemake(moved, "-n", "--configfile", str(cfg),
                                  snakefile=moved / "Snakefile")) == {}
    workdir = moved

    # Same seed, same numbers: regenerate one patient from scratch (demo data onwards) and get
    # bit-identical volumes and the same QC record.
    base = workdir / "results/preprocessed/A/1BA002"
    before = {n: sitk.GetArrayFromImage(sitk.ReadImage(str(base / f"{n}.nii.gz")))
              for n in ("mr", "ct", "mask")}
    qc_before = json.loads((base / "qc.json").read_text())
    rerun = run_snakemake(workdir, "results/preprocessed/A/1BA002/qc.json", "--cores", "2",
                          "--forcerun", "demo_patient", "--configfile", str(cfg),
                          snakefile=workdir / "Snakefile")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "register" in rerun.stdout + rerun.stderr, "the forced re-run must redo the steps"
    for n, arr in before.items():
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(sitk.ReadImage(str(base / f"{n}.nii.gz"))), arr)
    qc_after = json.loads((base / "qc.json").read_text())
    qc_after.pop("seconds"), qc_before.pop("seconds")
    assert qc_after == qc_before

    _check_report(workdir)
    _check_forced_retrain(workdir, cfg)


TABLES = ("quality", "poisoning", "membership", "inversion", "trap_weights", "trap_weights_3d",
          "trap_weights_defenses", "inversion_suite", "inversion_classifier", "privacy_utility",
          "evasion", "evasion_transfer", "evasion_dp", "noise_replay", "privacy_audit")
FIGURES = ("training/baseline.png", "training/secagg.png", "training/poison-A-g1.0-fedavg.png",
           "poisoning_heatmap.png", "sct_comparison.png", "fedmia_roc.png",
           "dlg_evolution_baseline_adam.png", "dlg_evolution_baseline_lbfgs.png",
           "trap_weights_slices_baseline.png", "trap_weights_slices_secagg.png",
           "privacy_utility.png", "evasion_epsilon.png", "evasion_alpha.png",
           "evasion_example.png")


def _check_report(workdir: Path) -> None:
    """Tables, figures, the verdict and the self-contained report of the tiny run."""
    for name in TABLES:
        for fmt in ("csv", "md", "tex", "html"):
            assert (workdir / f"results/tables/{name}.{fmt}").stat().st_size > 100, (name, fmt)
    quality = (workdir / "results/tables/quality.md").read_text()
    assert "| E (External) | federation | ✗ |" in quality and "| federation | ✓ |" in quality
    # the statistic each verdict line reads, fixed in the catalog, stated with its table
    assert "Primary statistic, the one the verdict reads: the pooled patient-level AUC" in (
        workdir / "results/tables/membership.md").read_text()
    assert "| constant predictor | – |" in quality
    grid = pd.read_csv(workdir / "results/tables/poisoning.csv")
    assert set(zip(grid["aggregation"], grid["gamma"], grid["poisoned"], strict=True)) == \
        {("fedavg", 1.0, "A")}
    summary = pd.read_csv(workdir / "results/eval/summary.csv").set_index(["scenario", "center"])
    # both training seeds' runs, each read against its own seed's baseline
    assert set(zip(grid["run"], grid["seed"], grid["reference"], strict=True)) == {
        ("poison-A-g1.0-fedavg", 3, "baseline"),
        ("poison-A-g1.0-fedavg-seed4", 4, "baseline-seed4")}
    for row in grid.itertuples():
        assert row.mae == pytest.approx(summary.loc[(row.run, row.evaluated), "mae_mean"])
        assert row.reference_mae == pytest.approx(summary.loc[(row.reference, row.evaluated),
                                                              "mae_mean"])
    for fig in FIGURES:
        assert (workdir / f"results/figures/{fig}").stat().st_size > 10_000, fig
    front = (workdir / "results/report/front_page.rst").read_text()
    for topic in ("Does the federation work? (utility gate)", "Data quality (preprocessing QC)",
                  "Membership inference (FedMIA)", "Gradient inversion (DLG)",
                  "Data poisoning under FedAvg", "Price of SecAgg+", "synthetic demo data",
                  "Malicious server (trap weights)", "Malicious-server defenses",
                  "Gradient inversion suite", "Defense: DP-FedAvg noise on client updates",
                  "Test-time evasion by a malicious client", "Evasion across the attacked",
                  "Noise replay: can the server regenerate the clients' noise?",
                  "Privacy audit (one run): DP-FedAvg"):
        assert topic in front, topic
    # the default noise source: the server's replay of dp-z0.5's noise removes none of it,
    # while the control (the same updates with seeded simulation noise) is recovered
    replay = pd.read_csv(workdir / "results/attacks/noise_replay/dp-z0.5.csv")
    assert (replay["noise_source"] == "os_entropy").all() and not replay["recovered"].any()
    assert replay["control_recovered"].all() and (replay["removed_share"].abs() < 0.2).all()
    assert "no guarantee against this server" not in front  # no simulation-noise scenario
    # the one-run audit: without noise every guess is right; dp-z0.5's one-round claim is
    # above what 60 canaries certify: consistent, and its verdict line inconclusive
    audit = pd.read_csv(workdir / "results/tables/privacy_audit.csv").set_index("scenario")
    assert set(audit.index) == {"baseline", "dp-z0.5"}
    assert audit.loc["baseline", "correct"] == audit.loc["baseline", "guesses"]
    assert audit.loc["dp-z0.5", "status"] == "consistent"
    assert audit.loc["dp-z0.5", "epsilon_claimed"] > audit.loc["dp-z0.5", "ceiling"]
    assert "ε measured" in (workdir / "results/tables/privacy_utility.md").read_text()
    # two training seeds of baseline and secagg: the lines that read them read both, the
    # costly attacks' lines say they read the first
    quality = pd.read_csv(workdir / "results/tables/quality.csv")
    assert set(quality["seed"].dropna()) == {3, 4}
    detail = front[front.index("Detail\n~~~~~~"):front.index("How the audit works")]
    lines = {m.group(1): line for line in detail.splitlines()
             if (m := re.match(r"- \*\*(.+?)\*\* \(", line))}
    # the summary table: a row per detail line, who attacks from the attack's view, the number
    # and the control from the finding
    rows, row = {}, []
    for line in front[front.index(".. list-table::"):front.index("Levels: ")].splitlines():
        if line.startswith("   * - "):
            row = [line[7:]]
            rows[row[0]] = row
        elif line.startswith("     - "):
            row.append(line[7:])
    assert set(rows) - {"Threat"} == set(lines)
    trap = rows["Malicious server (trap weights)"]
    assert trap[1] == "Malicious server" and "slices" in trap[3] and "untrained UNet" in trap[4]
    mia = rows["Membership inference (FedMIA)"]
    assert mia[1] == "Honest-but-curious server" and mia[3].startswith("baseline: AUC")
    assert "memorising control AUC" in mia[4] and mia[5] != "—"
    assert "on 2 training seeds" in lines["Price of SecAgg+"]
    assert "training seeds" in lines["Membership inference (FedMIA)"]
    assert "Read on one training seed (3)" in lines["Gradient inversion (DLG)"]
    assert "Holm" in front
    # under client noise and SecAgg+ the server's files hold no per-client side channel; the
    # clients' own records do
    for private in ("dp-z0.5", "secagg"):
        hist = pd.read_csv(workdir / f"results/train/{private}/history.tsv", sep="\t")
        assert not {"train_loss", "val_mae", "slices_per_s"} & set(hist.columns), private
        own = pd.read_csv(workdir / f"results/train/{private}/clients.tsv", sep="\t")
        assert {"train_loss", "val_mae", "val_mae_constant"} <= set(own.columns), private
    assert "Centers {{" in front  # the introduction's template is left for the report to fill
    # every job that ran left a benchmark file, and the runtime table counts each one once
    benchmarks = list((workdir / "results/benchmarks").rglob("*.tsv"))
    runtimes = pd.read_csv(workdir / "results/tables/runtimes.csv")
    total = runtimes[runtimes.level == "total"].iloc[0]
    # all but table_runtimes' own (written after the table) and the results page's, made later
    assert total["jobs"] == len(benchmarks) - 2, (total, len(benchmarks))
    # the results page: the verdict and every table of this run, each beside its CSV's hash
    from fedaudit.report.results_page import check_page

    page = (workdir / "results/report/results.md").read_text()
    assert check_page(page, workdir / "results") == []
    assert "- Seeds: 3, 4" in page and "## Audit verdict" in page and "## runtimes" in page
    assert total["job_minutes"] > 0 and total["wall_minutes"] > 0
    per_rule = runtimes[runtimes.level == "rule"].set_index("name")
    assert per_rule.loc["train", "jobs"] == sum(d.is_dir() for d in
                                                (workdir / "results/train").iterdir())
    assert runtimes.loc[runtimes.level == "rule", "jobs"].sum() == total["jobs"]

    report = workdir / "report.html"
    built = run_snakemake(workdir, "--report", str(report), "--configfile",
                          str(workdir / "tiny.yaml"), snakefile=workdir / "Snakefile")
    assert built.returncode == 0, built.stderr[-2000:]
    html = report.read_text(errors="replace")
    items = ["A.png", "E.png", "qc.tsv", "1BA001", "1BE001", "Audit verdict",
             "Data poisoning under FedAvg", "Centers A, B, E"]
    items += [f"{name}.html" for name in TABLES] + [Path(f).name for f in FIGURES]
    items += ["Training", "Privacy", "Integrity", "Data", "runtimes.html", "Runtimes"]
    for item in items:
        assert item in html, f"{item} missing from the report"
    # self-contained: no script or stylesheet fetched from the network
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']https?://", html)
    zipped = run_snakemake(workdir, "--report", str(workdir / "report.zip"), "--configfile",
                           str(workdir / "tiny.yaml"), snakefile=workdir / "Snakefile")
    assert zipped.returncode == 0, zipped.stderr[-2000:]
    assert (workdir / "report.zip").stat().st_size > 100_000


def _check_attacks(workdir: Path, split_a: dict, split_b: dict) -> None:
    """FedMIA on baseline and SecAgg+ logs, DLG on baseline: tables, raw arrays, figures."""
    fed = pd.read_csv(workdir / "results/attacks/fedmia/fedmia.csv")
    # the second training seed's baseline and secagg are attacked too
    assert set(fed["scenario"]) == {"baseline", "secagg", "memo", "dp-z0.5", "baseline-seed4",
                                    "secagg-seed4"}
    assert set(fed["target"]) == {"A", "B", "all"}
    # rounds: last; the control logs every round (train.server_log: all) and is read on all
    rounds = fed.groupby("scenario")["rounds"].agg(lambda r: set(r.astype(str))).to_dict()
    assert rounds == {**{s: {"2"} for s in rounds if s != "memo"}, "memo": {"1,2"}}
    assert set(fed["unit"]) == {"slice", "batch"}
    # the server's views: client updates; under SecAgg+ masked vectors and the aggregate
    views = fed.groupby("scenario")["view"].agg(set).to_dict()
    assert views == {"baseline": {"update"}, "secagg": {"masked", "aggregate"},
                     "memo": {"update"}, "dp-z0.5": {"update"}, "baseline-seed4": {"update"},
                     "secagg-seed4": {"masked", "aggregate"}}
    assert fed["auc"].dropna().between(0, 1).all()
    assert fed[fed.scenario == "memo"]["control"].all()
    assert not fed[fed.scenario == "baseline"]["control"].any()
    patient = fed[(fed.level == "patient") & (fed.test == "membership") & (fed.unit == "slice")
                  & (fed.score == "fedmia")].set_index(["scenario", "target"])
    # same-center non-members only: each center's validation and test patients
    assert patient.loc[("baseline", "A"), "n_member_patients"] == len(split_a["train"])
    assert patient.loc[("baseline", "A"), "n_nonmember_patients"] == \
        len(split_a["val"]) + len(split_a["test"])
    assert patient.loc[("baseline", "all"), "n_member_patients"] == \
        len(split_a["train"]) + len(split_b["train"])
    scores = pd.read_csv(workdir / "results/attacks/fedmia/baseline/scores.csv")
    members = scores[scores.member]
    assert set(members[members.target == "A"]["patient"]) == set(split_a["train"])
    nonmembers = set(scores[(scores.target == "B") & ~scores.member]["patient"])
    assert nonmembers == set(split_b["val"]) | set(split_b["test"])  # never center E
    assert (workdir / "results/figures/fedmia_roc.png").stat().st_size > 10_000
    sims = np.load(workdir / "results/attacks/fedmia/secagg/similarity.npz")
    assert sims["slice/similarity/masked"].shape[:2] == (1, 2)  # rounds x clients
    assert list(sims["centers"]) == ["A", "B"]
    assert not (workdir / "results/eval/memo").exists()  # a control is not evaluated

    dlg = pd.read_csv(workdir / "results/attacks/dlg/dlg.csv")
    assert set(dlg["center"]) == {"A", "B"} and set(dlg["optimizer"]) == {"adam", "lbfgs"}
    # the UNet, the same UNet without BatchNorm (positive control), the MLP code check
    assert set(dlg["network"]) == {"unet", "control", "code_check"}
    # every job scored every network, raw and after the gain/offset fit, as an SSIM
    ssim = dlg[dlg.metric.isin(["ssim_raw", "ssim_fit"])]
    assert len(ssim) == 2 * 2 * 3 * 2  # centers x optimizers x networks x {raw, fit}
    assert ssim["value"].astype(float).between(-1, 1).all()
    for opt in ("adam", "lbfgs"):
        assert (workdir / f"results/figures/dlg_evolution_baseline_{opt}.png").stat().st_size \
            > 10_000
    raw = np.load(workdir / "results/attacks/dlg/baseline/A_adam.npz")
    assert raw["unet_snapshots"].shape[0] == 3
    assert np.all(raw["unet_reconstruction"][raw["mask"] == 0] == 0)
    assert (workdir / "results/logs/attacks/dlg/baseline/A_adam.log").read_text().count("it/s")
    _check_trap_weights(workdir)
    _check_gradinv(workdir)
    _check_evasion(workdir)


def _check_gradinv(workdir: Path) -> None:
    """Paper 003's suite on baseline and the DP level: every method on both targets, the
    control and batches only without noise, the noise in the attacked gradient, ε."""
    rows = pd.read_csv(workdir / "results/attacks/gradinv/gradinv.csv")
    assert set(rows["method"]) == {"idlg", "inverting_gradients"}
    assert set(rows["scenario"]) == {"baseline", "dp-z0.5"}
    assert set(rows["center"]) == {"A", "B"}
    # under noise the UNet is attacked by the methods that recover a slice without it; the
    # others say why they did not run
    plain = rows[(rows.scenario == "baseline") & (rows.network == "unet") & (rows.batch_size == 1)]
    recovered = set(plain.loc[plain["success"].astype(bool), "method"])
    noisy = rows[rows.scenario == "dp-z0.5"]
    assert set(noisy.loc[noisy.network == "unet", "method"]) == recovered
    for method in {"idlg", "inverting_gradients"} - recovered:
        skipped = json.loads((workdir / f"results/attacks/gradinv/dp-z0.5/unet_{method}.json"
                              ).read_text())
        assert not skipped["results"] and "recovers 0/" in skipped["skipped"], skipped
    nets = rows.groupby("scenario")["network"].agg(set).to_dict()
    assert nets == {"baseline": {"unet", "control", "classifier"},
                    "dp-z0.5": {"classifier"} | ({"unet"} if recovered else set())}
    batches = rows.groupby("scenario")["batch_size"].agg(set).to_dict()
    assert batches == {"baseline": {1, 2}, "dp-z0.5": {1}}
    assert set(rows.loc[rows.scenario == "dp-z0.5", "noise"]) == {"dp_fedavg"}
    assert rows["ssim"].between(-1, 1).all() and rows["null_ssim"].between(-1, 1).all()
    clf = rows[(rows.target == "classifier") & (rows.batch_size == 1)]
    assert clf["label_recovered"].between(0, 3).all()
    # iDLG reads the label off the gradient: exact without noise
    exact = clf[(clf.scenario == "baseline") & (clf.method == "idlg")]
    assert exact["label_correct"].all()
    acc = pd.read_csv(workdir / "results/attacks/gradinv/classifier_accuracy.csv")
    assert {"baseline", "dp-z0.5"} == set(acc["scenario"])
    pu = pd.read_csv(workdir / "results/tables/privacy_utility.csv").set_index("scenario")
    assert np.isnan(pu.loc["baseline", "epsilon"]) and pu.loc["dp-z0.5", "epsilon"] > 0
    assert np.isfinite(pu.loc["baseline", "mae"])
    if not np.isfinite(pu.loc["dp-z0.5", "mae"]):
        # DP noise on BatchNorm's running variances can leave a model that outputs NaN: said,
        # not printed as 0
        assert "NaN (no usable model)" in (workdir / "results/tables/privacy_utility.md"
                                           ).read_text()
    table2 = (workdir / "results/tables/inversion_classifier.md").read_text()
    assert "| Dataset | Method | Model | ASR | SSIM | MSE | Time (s) |" in table2


def _check_evasion(workdir: Path) -> None:
    """Paper 004's evasion on baseline (local models from the log) and the DP level (local
    models recomputed by the clients' own training): every model scored, the ball kept."""
    root = workdir / "results/attacks/evasion"
    rows = pd.read_csv(root / "evasion.csv")
    # DP noise on BatchNorm's variances may leave a DP model without a finite sCT: then nothing
    # is crafted there and models.csv says so
    scenarios = set(rows["scenario"])
    assert "baseline" in scenarios and scenarios <= {"baseline", "dp-z0.5"}
    assert set(rows["attacker"]) == {"A"}
    assert set(rows["model"]) == {"A", "global", "B"}
    assert set(rows["role"]) == {"whitebox", "global", "victim"}
    assert (rows["linf"] <= rows["epsilon"] + 1e-6).all()
    assert set(rows["method"]) == {"fgsm", "bim", "pgd", "random"}
    models = pd.read_csv(root / "models.csv").drop_duplicates("scenario").set_index("scenario")
    assert models.loc["baseline", "local_models"] == "server_log"
    assert models.loc["dp-z0.5", "local_models"] == "recomputed"
    rates = pd.read_csv(root / "rates.csv")
    assert rates["n_slices"].max() <= 2 and rates["asr"].dropna().between(0, 1).all()
    table = (workdir / "results/tables/evasion.md").read_text()
    assert "| Scenario | Attack type | Clean MAE, clients (HU) |" in table
    assert "PGD-4" in table and "PGD-2" in table


def _check_trap_weights(workdir: Path) -> None:
    """The malicious server on baseline and SecAgg+, both modes, and the clients' defenses."""
    root = workdir / "results/attacks/trap_weights"
    rows = pd.concat([pd.read_csv(root / f"{s}/slices_{m}.csv")
                      for s in ("baseline", "secagg") for m in ("gradient", "local")])
    attack = rows[rows.setting == "attack"]
    assert set(attack["clients"]) == {2}
    # the local mode runs its own sweep (attacks.trap_weights.local), the gradient mode all
    assert attack.groupby("mode")["batch_size"].agg(set).to_dict() == {"gradient": {2, 4},
                                                                      "local": {2}}
    # the server sees each client without SecAgg+, only the sum with it
    views = attack.groupby("scenario")["view"].agg(set).to_dict()
    assert views == {"baseline": {"client"}, "secagg": {"aggregate"}}
    assert (attack["recovered"] <= attack["attacked"]).all()
    # the positive control: the untrained UNet at batch 1 gives every slice back exactly
    control = rows[rows.setting == "control"]
    assert len(control) and (control["recovered"] == control["attacked"]).all()
    assert (control["mean_ssim_recovered"] > 0.99).all()
    vols = pd.read_csv(root / "baseline/volumes.csv")
    assert set(vols["center"]) == {"A", "B"} and (vols["slices_recovered"] <= vols["depth"]).all()
    assert not (root / "secagg/volumes.csv").exists()  # 3-D needs one client's own update
    defenses = pd.read_csv(root / "baseline/defenses.csv").set_index(["server", "defense"])
    assert defenses.loc[("front", "architecture_check"), "round_refused"]
    assert "front.linear.weight" in defenses.loc[("front", "architecture_check"), "message"]
    assert not defenses.loc[("stealth", "architecture_check"), "round_refused"]
    assert defenses.loc[("stealth", "weight_audit"), "alarms"] == 2  # both clients
    # every honest round of every trained federation was audited
    for scenario in ("baseline", "secagg", "memo"):
        hist = pd.read_csv(workdir / f"results/train/{scenario}/history.tsv", sep="\t")
        # round 1 has no previous model to compare with; round 2 has
        assert hist[hist["round"] == 2]["audit_score"].between(0, 10).all(), scenario
    assert (workdir / "results/figures/trap_weights_slices_baseline.png").stat().st_size > 10_000


def _demo_patient(tmp: Path, center: str, index: int) -> Path:
    from fedaudit.data.demo import generate_patient

    out = tmp / "src" / f"{center}{index}"
    generate_patient(center, index, 11, out, resolution_scale=5.0)
    return out


def test_bad_patients_are_named_together_and_stop_the_study(workdir: Path) -> None:
    """A truncated CT, a missing CT, NaNs and an MR that cannot match its CT: each is recorded
    at the step that failed, every good patient is still preprocessed, and with
    preprocess.on_error: fail (the default) the study stops at the QC table with one message
    naming every bad patient and its file -- in one run, without --keep-going."""
    good = [_demo_patient(workdir, "A", i) for i in range(2)]
    trunc, nan_mr, wrong = (_demo_patient(workdir, "A", i) for i in range(2, 5))
    data = (trunc / "ct.nii.gz").read_bytes()
    (trunc / "ct.nii.gz").write_bytes(data[: len(data) // 2])
    mr = sitk.ReadImage(str(nan_mr / "mr.nii.gz"))
    arr = sitk.GetArrayFromImage(mr)
    arr[arr.shape[0] // 2, :3, :3] = np.nan
    nan_img = sitk.GetImageFromArray(arr)
    nan_img.CopyInformation(mr)
    sitk.WriteImage(nan_img, str(nan_mr / "mr.nii.gz"))
    # An MR of something else: a small blob instead of a head, so it cannot cover the head mask.
    blob = np.zeros_like(sitk.GetArrayFromImage(sitk.ReadImage(str(wrong / "mr.nii.gz"))))
    c = [s // 2 for s in blob.shape]
    blob[c[0] - 2:c[0] + 2, c[1] - 2:c[1] + 2, c[2] - 2:c[2] + 2] = 100.0
    ref = sitk.ReadImage(str(wrong / "mr.nii.gz"))
    blob_img = sitk.GetImageFromArray(blob)
    blob_img.CopyInformation(ref)
    sitk.WriteImage(blob_img, str(wrong / "mr.nii.gz"))

    rows = ["center,patient,mr,ct"]
    for name, folder in [("good1", good[0]), ("good2", good[1]), ("trunc", trunc),
                         ("nanmr", nan_mr), ("wrongmr", wrong)]:
        rows.append(f"A,{name},{folder / 'mr.nii.gz'},{folder / 'ct.nii.gz'}")
    (workdir / "manifest.csv").write_text("\n".join(rows) + "\n")
    # A SynthRAD-layout external center with a patient whose CT is missing.
    ext = workdir / "ext"
    shutil.copytree(good[0], ext / "P1")
    shutil.copytree(good[1], ext / "P2")
    (ext / "P2" / "ct.nii.gz").unlink()

    cfg = {**TINY, "centers": {
        "A": {"role": "train",
              "source": {"type": "manifest", "path": str(workdir / "manifest.csv")}},
        "E": {"role": "external", "source": {"type": "synthrad", "root": str(ext)}}},
        # one train center: no SecAgg+ and no FedMIA (both need two)
        "scenarios": {"unpoisoned": ["baseline"], "poisoning": {"gammas": []}}, "seeds": 1,
        "attacks": {"fedmia": {"enabled": False}, "dlg": {"enabled": False},
                    "trap_weights": {"enabled": False}}}
    res = run_snakemake(workdir, "--cores", "2", "--configfile",
                        str(_write_config(workdir, cfg)))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    for key in ("A/good1", "A/good2", "E/P1"):
        record = json.loads((workdir / f"results/preprocessed/{key}/qc.json").read_text())
        assert "fedaudit_quarantine" not in record and record["patient"] == key[2:], out[-3000:]
    steps = {"A/trunc": "register", "A/nanmr": "register", "A/wrongmr": "head_mask",
             "E/P2": "register"}
    for key, step in steps.items():
        record = json.loads((workdir / f"results/preprocessed/{key}/qc.json").read_text())
        assert record["step"] == step, record
        # no volume was made: the final cube holds the record, which no reader takes for one
        assert quarantine_record(workdir / f"results/preprocessed/{key}/mr.nii.gz") == record
        assert (workdir / f"results/preprocessed/{key}/qc.png").exists()
    assert not (workdir / "results/preprocessed/qc.tsv").exists()
    # the QC table's one message names all four, each with its file and problem
    assert "4 patient(s) could not be preprocessed:" in out
    assert f"A/trunc at register: {trunc / 'ct.nii.gz'}: CT file cannot be read" in out
    assert f"{nan_mr / 'mr.nii.gz'}: MR contains" in out and "NaN" in out
    assert f"E/P2 at register: {ext / 'P2' / 'ct.nii.gz'}: CT file does not exist" in out
    assert "A/wrongmr at head_mask: " in out and str(wrong / "mr.nii.gz") in out
    assert "preprocess.on_error: exclude" in out
    wrong_log = (workdir / "results/logs/head_mask/A/wrongmr.log").read_text()
    assert str(wrong / "mr.nii.gz") in wrong_log and "does not show this head" in wrong_log


def test_a_swapped_pair_in_the_external_center_is_flagged_and_left_out(workdir: Path) -> None:
    """A SynthRAD-layout test center where one folder holds another patient's MR: the pair passes
    every hard check, QC flags it, and it leaves the evaluation statistics (its sCT and metrics
    are still written, marked excluded); the other patients are unaffected."""
    ext = workdir / "ext"
    for i in range(5):
        src = _demo_patient(workdir, "E", i)
        shutil.copytree(src, ext / f"P{i}")
    # P2's MR beside P4's CT passes the hard checks. Of the 20 swaps among these five patients
    # (measured), 6 fail the hard checks, 13 pass them and are flagged, one is missed.
    shutil.copy(ext / "P2" / "mr.nii.gz", ext / "P4" / "mr.nii.gz")
    # P5: a CT cut short in transfer. preprocess.on_error: exclude records it as failed and the
    # study goes on without it (its MR is P0's: it never gets far enough to be compared)
    (ext / "P5").mkdir()
    shutil.copy(ext / "P0" / "mr.nii.gz", ext / "P5" / "mr.nii.gz")
    data = (ext / "P0" / "ct.nii.gz").read_bytes()
    (ext / "P5" / "ct.nii.gz").write_bytes(data[: len(data) // 2])
    # two training centers of one patient each: a federation to evaluate E with (the flag and
    # the exclusion are E's)
    small = {"role": "train", "source": {"type": "demo", "patients": 1}}
    cfg = {**TINY,
           "centers": {"A": small, "B": small,
                       "E": {"role": "external", "source": {"type": "synthrad", "root": str(ext)}}},
           "train": {**TINY["train"], "rounds": 1}, "seeds": 1,
           "preprocess": {**TINY["preprocess"], "on_error": "exclude"},
           "scenarios": {"unpoisoned": ["baseline"], "poisoning": {"gammas": []}}}
    # targets first: what follows --configfile is read as more config files
    res = run_snakemake(workdir, "results/eval/summary.csv", "--cores", "2", "--configfile",
                        str(_write_config(workdir, cfg)))
    assert res.returncode == 0, res.stderr[-3000:]
    flags = json.loads((workdir / "results/preprocessed/qc_flags.json").read_text())
    assert list(flags["flagged"]) == ["E/P4"] and flags["excluded"] == ["E/P4", "E/P5"]
    assert "Mattes MI after registration" in flags["flagged"]["E/P4"]
    assert list(flags["failed"]) == ["E/P5"]
    assert flags["failed"]["E/P5"].startswith(f"register: {ext / 'P5' / 'ct.nii.gz'}: CT file "
                                              "cannot be read")
    qc = pd.read_csv(workdir / "results/preprocessed/qc.tsv", sep="\t")
    assert list(qc.columns[:6]) == ["center", "patient", "qc_flagged", "qc_reasons",
                                    "failed_step", "error"]
    assert qc.set_index("patient")["qc_flagged"].to_dict()["P4"]
    assert list(qc["patient"][qc["center"] == "E"]) == [f"P{i}" for i in range(6)]
    p5 = qc.set_index("patient").loc["P5"]
    assert p5["failed_step"] == "register" and "CT file cannot be read" in p5["error"]
    # what the front page says (its data-quality line, from this run's record)
    line = data_quality_finding(flags).sentence
    assert line.startswith("1 patient(s) could not be preprocessed and were left out "
                           f"(preprocess.on_error: exclude): E/P5 (failed at register: {ext}")
    metrics = pd.read_csv(workdir / "results/eval/baseline/metrics.csv").set_index("patient")
    assert metrics.loc["P4", "excluded"] and metrics.loc["P5", "excluded"]
    assert not metrics.drop(index=["P4", "P5"])["excluded"].any()
    assert np.isnan(metrics.loc["P5", "mae"]) and np.isfinite(metrics.loc["P4", "mae"])
    assert (workdir / "results/eval/baseline/sct/E/P4.nii.gz").exists()
    assert quarantine_record(workdir / "results/eval/baseline/sct/E/P5.nii.gz") is not None
    summary = pd.read_csv(workdir / "results/eval/summary.csv").set_index(["scenario", "center"])
    assert summary.loc[("baseline", "E"), "n"] == 4  # P0-P3
    kept = metrics[(metrics["center"] == "E") & ~metrics["excluded"]]
    assert summary.loc[("baseline", "E"), "mae_mean"] == pytest.approx(kept["mae"].mean())
