"""Which rounds FedMIA reads: the audited federations' configured rounds, every round the
memorising control logs, and the table and verdict that say so."""

from __future__ import annotations

import pandas as pd
import pytest

from fedaudit.attacks.fedmia.report import membership_finding, membership_table, rounds_text
from fedaudit.attacks.fedmia.rounds import rounds_read


def test_the_control_is_read_on_every_round_it_logs_and_the_audited_on_the_config() -> None:
    assert rounds_read("last", control=False, log_rounds="last") == "last"
    assert rounds_read([3, 5], control=False, log_rounds="all") == [3, 5]
    # the control trains its own number of rounds: all of them when it logs all
    assert rounds_read("last", control=True, log_rounds="all") == "all"
    assert rounds_read(35, control=True, log_rounds="all") == "all"
    # a control that logs only its last round is read there; the study's round number is not
    # a round of the control's
    assert rounds_read("last", control=True, log_rounds="last") == "last"
    assert rounds_read(35, control=True, log_rounds="last") == "last"
    with pytest.raises(ValueError, match="train.server_log.rounds"):
        rounds_read("last", control=True, log_rounds="some")


def test_the_demo_control_logs_every_round_and_the_audited_federations_their_last() -> None:
    from fedaudit.config import REPO_ROOT, load_config
    from fedaudit.scenarios import result_settings, scenarios_from_config

    cfg = load_config(REPO_ROOT / "config" / "config.yaml")
    sc = scenarios_from_config(cfg)
    logs = {n: result_settings(cfg["train"], s)["server_log"]["rounds"] for n, s in sc.items()}
    controls = {n for n, s in sc.items() if s.control}
    assert controls == {"memorise", "memorise-seed43"}
    assert {logs[n] for n in controls} == {"all"}
    assert {logs[n] for n in set(sc) - controls} == {"last"}


def test_rounds_are_written_as_a_span_or_a_list() -> None:
    assert rounds_text("35") == "round 35"
    assert rounds_text("1,2,3,4,5,6,7,8,9,10") == "rounds 1–10 (10)"
    assert rounds_text("5,15,35") == "rounds 5, 15, 35"


def _rows(scenario: str, control: bool, auc: float, rounds: str) -> list[dict]:
    rows = []
    for target, n1, n0 in (("A", 2, 2), ("all", 4, 4)):
        for test in ("membership", "center"):
            rows.append({"scenario": scenario, "control": control, "secagg": False,
                         "view": "update", "score": "fedmia", "unit": "slice",
                         "level": "patient", "test": test, "target": target, "auc": auc,
                         "ci_low": auc - 0.2, "ci_high": min(1.0, auc + 0.1),
                         "p_value": 0.4 if auc < 0.7 else 0.01, "n_member_patients": n1,
                         "n_nonmember_patients": n0, "rounds": rounds})
    return rows


def test_the_table_and_the_verdict_name_the_rounds_read() -> None:
    fed = pd.DataFrame(_rows("baseline", False, 0.55, "35")
                       + _rows("memorise", True, 0.93, ",".join(map(str, range(1, 11)))))
    t = membership_table(fed)
    assert any("baseline round 35; memorise rounds 1–10 (10)" in n for n in t.notes)
    f = membership_finding(t.data, unit="slice")
    assert ("The memorising control, read on rounds 1–10 (10) of its log (the federations "
            "above: round 35), reaches AUC 0.93") in f.sentence
    assert f.level == "not detected"
    # read on the same rounds as the audited federations: nothing more to say
    same = membership_finding(membership_table(fed.assign(rounds="35")).data, unit="slice")
    assert "The memorising control, read on round 35 of its log, reaches" in same.sentence
    # a frame without the rounds column (older results) reads as before
    old = membership_finding(membership_table(fed.drop(columns="rounds")).data, unit="slice")
    assert "The memorising control reaches AUC 0.93" in old.sentence
