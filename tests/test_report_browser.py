"""The HTML report opens on the audit verdict in a real browser (headless Chromium).

Snakemake's report template centres the front page and the rule graph in a box one window high;
when they are taller than the window, the top of the front page -- the audit verdict -- lands
above the scrollable area and no scrolling reaches it (snakemake/snakemake#2782). The workflow
profile adds ``workflow/report/style.css``, which keeps the top reachable. This test builds the
report of a small workflow with the same shape (a long front page with an "Audit verdict"
section, a tall rule graph) through a copy of ``profiles/default``, opens it in Chromium at
1366x768 and reads where the heading is from a script run in the page.

Needs Debian's ``chromium``: skipped without it, except under ``.ci/run``
(``FEDAUDIT_BROWSER=1``), where a missing browser fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1366, 768
RULES = 40  # a chain of rules: a rule graph about 2,000 px high, as tall as the demo's
VERDICT_LINES = 14  # the demo's front page has 14 verdict lines

# Run in the page after the report's own scripts have rendered it: where the verdict heading is
# and how tall the scrolled content is, written into the DOM for --dump-dom to return.
PROBE = """<script>
(function probe(tries) {
  const heading = [...document.querySelectorAll("h1, h2, h3")]
    .find(e => e.textContent.trim() === "Audit verdict");
  if (!heading && tries > 0) { setTimeout(() => probe(tries - 1), 100); return; }
  const box = heading ? heading.getBoundingClientRect() : null;
  const scroller = heading ? heading.closest(".overflow-auto") : null;
  const out = document.createElement("pre");
  out.id = "fedaudit-probe";
  out.textContent = JSON.stringify({
    found: !!heading, top: box && box.top, bottom: box && box.bottom,
    viewport: [innerWidth, innerHeight],
    content_height: scroller ? scroller.scrollHeight : null,
    scroll_top: scroller ? scroller.scrollTop : null});
  document.body.appendChild(out);
})(200);
</script>"""


def _browser() -> str:
    if CHROMIUM is None:
        if os.environ.get("FEDAUDIT_BROWSER") == "1":
            pytest.fail("FEDAUDIT_BROWSER=1 but no chromium on PATH (.ci/run installs it)")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    return CHROMIUM


def _workflow(root: Path) -> None:
    """A workflow shaped like FedAudit's report: a long front page, a tall rule graph."""
    bullet = ("- **Threat {i}**: a verdict line as long as the demo's, with its numbers, its "
              "confidence interval, the control that licenses it and the seeds it holds on; "
              + "the sentence goes on as the demo's do, " * 8 + "and ends.\n")
    (root / "front.rst").write_text(
        "FedAudit audits the security of a federated translation framework.\n\n"
        "Audit verdict\n-------------\n\n" + "".join(bullet.format(i=i)
                                                    for i in range(VERDICT_LINES)))
    rules = ['report: "front.rst"\n\n', "rule all:\n",
             f'    input: "out/r{RULES - 1}.txt"\n\n']
    for i in range(RULES):
        rules.append(f"rule step_{i}:\n")
        if i:
            rules.append(f'    input: "out/r{i - 1}.txt"\n')
        rules.append(f'    output: report("out/r{i}.txt", category="Results")\n'
                     '    shell: "echo {rule} > {output}"\n\n')
    (root / "Snakefile").write_text("".join(rules))
    # the repository's workflow profile and the stylesheet it names, at the same paths
    shutil.copytree(REPO / "profiles/default", root / "profiles/default")
    (root / "workflow/report").mkdir(parents=True)
    shutil.copy(REPO / "workflow/report/style.css", root / "workflow/report/style.css")


def _probe(report: Path, browser: str) -> dict:
    page = report.with_name("probe.html")
    html = report.read_text(errors="replace")
    # the last </body>: the page's scripts hold the string too
    head, tag, tail = html.rpartition("</body>")
    assert tag, f"{report}: no </body>"
    page.write_text(head + PROBE + tag + tail)
    # --no-sandbox: CI runs as root; --disable-dev-shm-usage: containers with a small /dev/shm
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-dev-shm-usage",
                          "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}",
                          "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="fedaudit-probe">(.*?)</pre>', res.stdout, re.S)
    assert m, f"the probe did not run in Chromium (rc {res.returncode}): {res.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&amp;", "&"))


def test_the_report_opens_on_the_audit_verdict(tmp_path: Path) -> None:
    browser = _browser()
    _workflow(tmp_path)
    # run inside the workflow's folder (not conftest.run_snakemake, which runs from the
    # repository): the workflow profile and its stylesheet path are found from there
    for args in (["--cores", "1", "--quiet"], ["--report", "report.html"]):
        res = subprocess.run(["snakemake", *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    probe = _probe(tmp_path / "report.html", browser)
    assert probe["found"], "no 'Audit verdict' heading on the report's first page"
    # headless Chromium's page is the window less its frame (681 px of 768 measured): stricter
    width, height = probe["viewport"]
    assert width == WIDTH and height <= HEIGHT, probe
    # the case that hides the verdict: content taller than the window
    assert probe["content_height"] > 2 * height, probe
    # at scroll 0 the heading is inside the window
    assert probe["scroll_top"] == 0
    assert 0 <= probe["top"] and probe["bottom"] <= height, probe
