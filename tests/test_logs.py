"""Per-rule logs are plain text, and a long job shows its progress on the console."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fedaudit.logs import console, rule_logging


def test_a_rule_log_is_plain_text_with_every_progress_update_on_its_own_line(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "logs" / "train" / "baseline.log"
    with rule_logging(log, "train") as logger:
        # Flower's console handler colours its level names; tqdm redraws its bar with \r
        print("\x1b[92mINFO \x1b[0m:      [ROUND 1]")
        sys.stderr.write("\rDLG adam:   0%|  | 0/600")
        sys.stderr.write("\rDLG adam:  50%|# | 300/600")
        sys.stderr.write("\rDLG adam: 100%|##| 600/600\n")
        logger.info("after the bar")
        console("round 1/2 done in 1.0 s")
    text = log.read_text()
    assert "\x1b" not in text and "\r" not in text
    assert "INFO :      [ROUND 1]\n" in text
    assert ("DLG adam:   0%|  | 0/600\nDLG adam:  50%|# | 300/600\n"
            "DLG adam: 100%|##| 600/600\n") in text
    assert "INFO after the bar" in text
    # the round's line went to the console, tagged with the rule and its job, not to the log
    err = capfd.readouterr().err
    assert "FedAudit [train baseline] round 1/2 done in 1.0 s" in err
    assert "round 1/2 done" not in text


def test_console_lines_outside_a_rule_go_nowhere(capfd: pytest.CaptureFixture[str]) -> None:
    console("round 1/2 done")
    assert capfd.readouterr().err == ""
