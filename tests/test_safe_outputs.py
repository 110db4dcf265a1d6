"""Results that cannot lie: safe loading of torch files, writes that fail loudly and leave
nothing behind, the code digest that keys jobs and checkpoints to their code, path-safe ids,
complete server logs and the clients' bounds on server-sent settings."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fl_study import make_study, tiny_plan

from fedaudit.code_digest import PROFILES, clear_caches, closure, code_digest
from fedaudit.config import ConfigError, Study, validate_config
from fedaudit.federation import checkpoint, server_log
from fedaudit.federation.server_settings import ServerSettingError, check_local, check_model
from fedaudit.models.store import load_model, save_model
from fedaudit.models.unet import UNet2D
from fedaudit.torch_files import UnsafeFileError

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "fedaudit"


class _Payload:
    """A pickle that creates a file when unpickled: what a crafted model.pt would do."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


# ------------------------------------------------------------------ safe loading


def test_a_crafted_model_file_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    bad = tmp_path / "model.pt"
    torch.save({"state_dict": {}, "base": 2, "x": _Payload(sentinel)}, bad)
    with pytest.raises(UnsafeFileError, match=str(bad)):
        load_model(bad)
    assert not sentinel.exists()
    # the project's own file loads the safe way
    good = save_model(tmp_path / "good.pt", UNet2D(base=2), base=2, scenario={"name": "s"},
                      rounds=1, seed=3)
    assert load_model(good).base == 2


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"round": 1, "fingerprint": "f", "arrays": [], "history": _Payload(sentinel)},
               folder / "round_001.pt")
    with pytest.raises(UnsafeFileError, match="round_001.pt"):
        checkpoint.latest(folder, "f")
    assert not sentinel.exists()


def test_checkpoints_round_trip_and_other_code_is_not_resumed(tmp_path: Path, caplog) -> None:
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7], dtype=np.int64)]
    history = [{"round": 1, "center": "A", "train_loss": np.float32(0.5)}]
    clients = make_study(tmp_path / "data", {"A": 1}, size=32)
    plan = tiny_plan(clients, tmp_path / "out", code="aaaa")
    checkpoint.save(tmp_path / "ck", checkpoint.Checkpoint(1, arrays, history, plan.fingerprint()))
    back = checkpoint.latest(tmp_path / "ck", plan.fingerprint())
    assert back is not None and back.round == 1
    for a, b in zip(arrays, back.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert back.history == [{"round": 1, "center": "A", "train_loss": 0.5}]
    # the same run under other training code: ignored, with a log line naming the file
    other = tiny_plan(clients, tmp_path / "out", code="bbbb")
    assert other.fingerprint() != plan.fingerprint()
    with caplog.at_level(logging.WARNING):
        assert checkpoint.latest(tmp_path / "ck", other.fingerprint()) is None
    assert "round_001.pt" in caplog.text and "other training code" in caplog.text
    assert not list((tmp_path / "ck").glob(".tmp-*"))


# ------------------------------------------------------------------ writes that cannot lie

# Each writer, run in a subprocess under RLIMIT_FSIZE (a full disk without root): it must fail
# with an error naming its path and leave neither the file nor a temporary one.
_WRITERS = {
    "volume": """
        import SimpleITK as sitk
        from fedaudit.io import write_volume
        img = sitk.GetImageFromArray(rng.random((48, 48, 48)).astype("float32"))
        write_volume(img, out / "mr.nii.gz")""",
    "json": """
        from fedaudit.io import write_json
        write_json({"values": rng.random(5000).tolist()}, out / "record.json")""",
    "table": """
        import pandas as pd
        from fedaudit.report.render import write_table
        from fedaudit.report.tables import Table, Block
        frame = pd.DataFrame(rng.random((2000, 4)), columns=list("abcd"))
        write_table(Table("t", "t", frame, [Block(frame)]), {"csv": out / "t.csv"})""",
    "server_log": """
        from fedaudit.federation.server_log import write_round
        arrays = [rng.random((64, 64)).astype("float32")]
        write_round(out, 1, ["w"], arrays, [{"center": "A", "num_examples": 3, "metrics": {},
                                             "arrays": arrays}])""",
    "checkpoint": """
        from fedaudit.federation.checkpoint import Checkpoint, save
        save(out, Checkpoint(1, [rng.random((64, 64)).astype("float32")], [], "f"))""",
    "model": """
        from fedaudit.models.store import save_model
        from fedaudit.models.unet import UNet2D
        save_model(out / "model.pt", UNet2D(base=4), base=4)""",
}


@pytest.fixture(scope="module")
def full_disk_runs(tmp_path_factory) -> dict[str, dict]:
    """Every writer under a 4 KiB file-size limit, in one subprocess (imports once)."""
    root = tmp_path_factory.mktemp("full_disk")
    cases = "\n".join(
        f"def case_{name}(out):\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ")
        for name, body in _WRITERS.items())
    script = f"""
import json, resource, sys, traceback
from pathlib import Path
import numpy as np
rng = np.random.default_rng(0)
{cases}
results = {{}}
root = Path(sys.argv[1])
# after the imports: a file-size limit that every writer's output exceeds
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
for name in {list(_WRITERS)!r}:
    out = root / name
    out.mkdir()
    try:
        globals()["case_" + name](out)
        results[name] = {{"error": None}}
    except Exception as err:
        results[name] = {{"error": f"{{type(err).__name__}}: {{err}}"}}
    results[name]["files"] = sorted(p.name for p in out.rglob("*") if p.is_file())
print("RESULTS" + json.dumps(results))
"""
    res = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULTS"))
    return json.loads(line.removeprefix("RESULTS"))


@pytest.mark.parametrize("writer", list(_WRITERS))
def test_a_failed_write_names_the_path_and_leaves_nothing(full_disk_runs: dict,
                                                           writer: str) -> None:
    got = full_disk_runs[writer]
    assert got["error"] is not None, f"{writer}: a write over the file-size limit succeeded"
    # names the file the user asked for, not a temporary one
    assert f"full_disk0/{writer}/" in got["error"] and ".tmp-" not in got["error"], got["error"]
    assert got["files"] == [], f"{writer} left {got['files']}"


def test_a_write_keeps_the_previous_version_when_it_fails(tmp_path: Path) -> None:
    from fedaudit.atomic import WriteError, atomic_path, write_text

    path = write_text("old\n", tmp_path / "t.txt")

    def refuse(tmp: Path) -> None:
        raise WriteError(tmp, "refused")

    with pytest.raises(WriteError, match="refused"), atomic_path(path, refuse) as tmp:
        tmp.write_text("new\n")
    assert path.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["t.txt"]


# ------------------------------------------------------------------ the code digest


def test_the_training_closure_holds_its_code_and_not_the_report() -> None:
    folders = [p.parent for p in sorted(SRC.glob("*/*/plugin.py"))]
    from fedaudit.code_digest import plugin_roots

    train = closure([REPO / "workflow/scripts/train.py", *plugin_roots(folders)],
                    PROFILES["run"])
    rel = {str(p.relative_to(SRC.parent)) for p in train if p.is_relative_to(SRC.parent)}
    # what training runs, imports inside functions and catalog hooks included
    assert {"fedaudit/federation/local.py", "fedaudit/federation/client.py",
            "fedaudit/defenses/dp_sgd/private.py", "fedaudit/attacks/poisoning/noise.py",
            "fedaudit/attacks/trap_weights/server.py"} <= rel
    assert REPO / "workflow/scripts/_common.py" in train
    # a table builder and the figures are not training code (a comparison's plugin.py is its
    # spec, which every job's catalog loads, as an attack's)
    assert not {p for p in rel if (p.startswith(("fedaudit/plots/", "fedaudit/comparisons/"))
                                   and not p.endswith(("/plugin.py", "/__init__.py")))
                or p.endswith("/figures.py")}
    assert "fedaudit/attacks/fedmia/report.py" not in rel
    report = closure([REPO / "workflow/scripts/table.py", *plugin_roots(folders)],
                     PROFILES["report"])
    assert SRC / "attacks/fedmia/report.py" in report


def test_a_plugin_folder_counts_by_its_code_not_its_comments(tmp_path: Path) -> None:
    plugin = shutil.copytree(REPO / "tests/plugins/loss_threshold", tmp_path / "loss_threshold")
    script = REPO / "workflow/scripts/train.py"
    before = code_digest([script], [plugin])
    steps = plugin / "steps.py"
    text = steps.read_text()
    steps.write_text('"""Another docstring."""\n# a comment\n' + text.split('"""', 2)[2])
    clear_caches()
    assert code_digest([script], [plugin]) == before
    steps.write_text(text + "\nTHRESHOLD_SHIFT = 1\n")
    clear_caches()
    assert code_digest([script], [plugin]) != before


# ------------------------------------------------------------------ names and bounds


@pytest.fixture
def demo_raw() -> dict:
    with open(REPO / "config" / "config.yaml") as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("name", [".", "..", ".hidden"])
def test_dot_names_are_config_errors(demo_raw: dict, name: str) -> None:
    custom = dict(demo_raw)
    custom["scenarios"] = {"custom": {name: {"aggregation": "fedavg"}}}
    with pytest.raises(ConfigError, match="scenarios.custom"):
        validate_config(custom)
    control = dict(demo_raw)
    control["scenarios"] = {"membership_control": {"enabled": True, "name": name}}
    with pytest.raises(ConfigError, match="scenarios.membership_control.name"):
        validate_config(control)
    centers = dict(demo_raw)
    centers["centers"] = {**demo_raw["centers"], name: {"role": "train",
                                                        "source": {"type": "demo"}}}
    with pytest.raises(ConfigError, match="centers"):
        validate_config(centers)


def test_a_manifest_patient_named_dotdot_is_an_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("center,patient,mr,ct\nA,..,a/mr.nii.gz,a/ct.nii.gz\n")
    cfg = validate_config({"centers": {"A": {"role": "train", "source": {
        "type": "manifest", "path": str(manifest)}}}})
    with pytest.raises(ConfigError, match=r"m.csv:2: patient id '\.\.'"):
        Study(cfg).all_patients()


def _two_round_log(root: Path) -> Path:
    arrays = [np.ones((2, 2), np.float32)]
    for rnd in (1, 2, 3):
        server_log.write_round(root, rnd, ["w"], arrays, [
            {"center": "A", "num_examples": 1, "metrics": {}, "arrays": arrays}])
    server_log.write_index(root, [1, 2, 3])
    return root


def test_a_missing_round_or_a_truncated_array_is_an_error_naming_it(tmp_path: Path) -> None:
    root = _two_round_log(tmp_path / "log")
    assert server_log.resolve_rounds(root, "all") == [1, 2, 3]
    shutil.rmtree(root / "round_002")
    with pytest.raises(server_log.ServerLogError, match=r"round_002/round.json: round 2"):
        server_log.resolve_rounds(root, "all")
    root = _two_round_log(tmp_path / "log2")
    path = root / "round_003" / "update_A.npz"
    path.write_bytes(path.read_bytes()[:40])
    assert not zipfile.is_zipfile(path)
    with pytest.raises(server_log.ServerLogError, match=str(path)):
        server_log.load_round(root, 3)
    # an index that names a round the run did not write cannot be published
    with pytest.raises(server_log.ServerLogError, match=r"\[4\]"):
        server_log.write_index(root, [1, 2, 3, 4])


@pytest.mark.parametrize(("field", "value", "words"), [
    ("local_epochs", 10**9, "an integer in [1, 100]"),
    ("batch_size", 10**6, "an integer in [1, 4096]"),
    ("num_workers", 4096, "an integer in [0, 8]"),
    ("lr", "abc", "a number in (0, 1e+06]"),
    ("lr", float("nan"), "a number in (0, 1e+06]"),
    ("momentum", 1.0, "a number in [0, 1)"),
    ("batch_size", True, "an integer"),
    ("slab", [0, 5, 2], "first < stop"),
])
def test_out_of_range_server_settings_are_refused_naming_the_field(field, value, words) -> None:
    with pytest.raises(ServerSettingError, match=rf"round 3: the server set {field} = ") as err:
        check_local({field: value}, {}, 3)
    assert err.value.field == field and words in str(err.value)
    # what the built-in attacks send passes
    check_local({"optimizer": "sgd", "momentum": 0.0, "lr": 1000.0, "proximal_mu": 0.0,
                 "max_batches": 1, "slab": [0, 3, 11], "batch_size": 64}, {}, 3)
    # the client's own policy tightens the bound
    with pytest.raises(ServerSettingError, match="an integer in \\[1, 2\\]"):
        check_local({"local_epochs": 3}, {"local_epochs_max": 2}, 3)


def test_a_server_defined_layer_is_bounded_by_the_client() -> None:
    unet = {"arch": "unet2d", "base": 8}
    check_model({**unet, "front": {"kind": "linear", "d": 1024, "k": 512}}, {}, 1024)
    with pytest.raises(ServerSettingError, match="model.front.k"):
        check_model({**unet, "front": {"kind": "linear", "d": 1024, "k": 10**7}}, {}, 1024)
    with pytest.raises(ServerSettingError, match="model.front.d = 999"):
        check_model({**unet, "front": {"kind": "linear", "d": 999, "k": 8}}, {}, 1024)
    with pytest.raises(ServerSettingError, match="model.base"):
        check_model({"arch": "unet2d", "base": 10**5}, {}, 1024)


def test_a_client_refuses_a_round_outside_its_policy(tmp_path: Path) -> None:
    from fedaudit.federation.client import round_training

    clients = make_study(tmp_path / "data", {"A": 1}, size=32)
    plan = tiny_plan(clients, tmp_path / "out")
    for local, field in (({"local_epochs": 1e9}, "local_epochs"), ({"lr": "abc"}, "lr"),
                         ({"num_workers": 4096}, "num_workers")):
        with pytest.raises(ServerSettingError, match=f"the server set {field} = "):
            round_training(plan, {"round": 2, "local": json.dumps(local)})
    local, lr, steps = round_training(plan, {"round": 2, "local": json.dumps(
        {"optimizer": "sgd", "lr": 1000.0, "max_batches": 1})})
    assert local.optimizer == "sgd" and lr == 1000.0 and steps == 1
