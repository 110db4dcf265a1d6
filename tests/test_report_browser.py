"""The HTML report in a real browser (headless Chromium): it opens on the audit verdict, and a
table wider than the window scrolls into view instead of being cut.

Snakemake's report template centres the front page and the rule graph in a box one window high;
when they are taller than the window, the top of the front page -- the audit verdict -- lands
above the scrollable area and no scrolling reaches it (snakemake/snakemake#2782). The workflow
profile adds ``workflow/report/style.css``, which keeps the top reachable. These tests build the
report of a small workflow with the same shape (a long front page with an "Audit verdict"
section, a tall rule graph, a table as wide as a wide audit table, written by FedAudit's own
table writer) through a copy of ``profiles/default`` and open it in Chromium at 1366x768: the
verdict's place is read by a script run in the page; the table is opened as a user does
(its category in the menu, the eye button) through WebDriver, which can enter the frame the report
shows it in (a ``data:`` frame, closed to the page's own scripts).

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium: skipped without them, except
under ``.ci/run`` (``FEDAUDIT_BROWSER=1``), where a missing one fails the test.
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
CHROMEDRIVER = shutil.which("chromedriver")
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
  const table = document.querySelector("table.fedaudit-summary");
  const rows = table ? table.querySelectorAll("tr") : [];
  // the first data row's top and the third's bottom: the three most severe findings
  const first = rows.length > 3 ? [rows[1].getBoundingClientRect().top,
                                   rows[3].getBoundingClientRect().bottom] : null;
  const tbox = table ? table.getBoundingClientRect() : null;
  const out = document.createElement("pre");
  out.id = "fedaudit-probe";
  out.textContent = JSON.stringify({
    found: !!heading, top: box && box.top, bottom: box && box.bottom,
    viewport: [innerWidth, innerHeight],
    content_height: scroller ? scroller.scrollHeight : null,
    scroll_top: scroller ? scroller.scrollTop : null,
    table_rows: rows.length, table_left: tbox && tbox.left, table_right: tbox && tbox.right,
    header: rows.length ? [...rows[0].querySelectorAll("th")].map(e => e.textContent.trim())
                        : null,
    first_rows: first});
  document.body.appendChild(out);
})(200);
</script>"""


def _missing(what: str) -> None:
    if os.environ.get("FEDAUDIT_BROWSER") == "1":
        pytest.fail(f"FEDAUDIT_BROWSER=1 but {what} is missing (.ci/run installs it)")
    pytest.skip(f"needs {what}")


def _browser() -> str:
    if CHROMIUM is None:
        _missing("Debian's chromium (apt-get install chromium)")
    return CHROMIUM


# A table as wide as FedAudit's widest: the membership table's 15 columns with CIs (about 2,900
# px in the report's font), written by the project's own HTML writer.
WIDE_COLUMNS = [f"column {i} with a long header" for i in range(14)] + ["AUC (95% CI)"]
WIDE_CATEGORY = "Privacy"


def _wide_table_html() -> str:
    import pandas as pd

    from fedaudit.report.render import to_html
    from fedaudit.report.tables import Block, Table

    frame = pd.DataFrame([[f"{r}.{c} 0.123 [0.012, 0.987]" for c in range(len(WIDE_COLUMNS))]
                          for r in range(40)], columns=WIDE_COLUMNS)
    return to_html(Table("membership", "Membership inference", frame, [Block(frame)],
                         ["A note under the table."]))


def _front_page() -> str:
    """A front page as FedAudit writes it (:func:`fedaudit.report.verdict.front_page`) with the
    demo's number of verdict lines, each as long as the demo's, and its real introduction."""
    from fedaudit.report.levels import Finding, Level
    from fedaudit.report.verdict import front_page

    levels = [Level.HIGH, Level.MODERATE, Level.INCONCLUSIVE, Level.RESISTS] + \
        [Level.INFO] * (VERDICT_LINES - 4)
    findings = [Finding(f"Threat {i}", level,
                        "a verdict line as long as the demo's, with its numbers, its confidence "
                        "interval, the control that licenses it and the seeds it holds on; "
                        + "the sentence goes on as the demo's do, " * 8 + "and ends.",
                        power="the control works." if level == Level.RESISTS else "",
                        number="32/32 slices (95% CI 0.89–1.00; null 0)",
                        control="untrained UNet, batch 1: every slice recovered",
                        attacker="Honest-but-curious server",
                        advice="turn on the clients' architecture check and weight audit")
                for i, level in enumerate(levels)]
    intro = (REPO / "workflow/report/workflow.rst").read_text(encoding="utf-8")
    # the introduction's templates need Snakemake's config: plain text here, as long
    return front_page(intro.replace("{{", "(").replace("}}", ")"), findings, demo=True)


SUMMARY_HEADER = ["Threat", "Who attacks", "Level", "The number behind it",
                  "Control that licenses it", "What to do"]


def _workflow(root: Path) -> None:
    """A workflow shaped like FedAudit's report: a long front page, a tall rule graph, a wide
    table (40 rows: taller than the window as well)."""
    (root / "front.rst").write_text(_front_page())
    (root / "wide.html").write_text(_wide_table_html())
    rules = ['report: "front.rst"\n\n', "rule all:\n",
             f'    input: "out/r{RULES - 1}.txt", "out/membership.html"\n\n',
             "rule table_membership:\n",
             f'    output: report("out/membership.html", category="{WIDE_CATEGORY}", '
             'labels={"table": "membership"})\n',
             '    shell: "cp wide.html {output}"\n\n']
    for i in range(RULES):
        rules.append(f"rule step_{i}:\n")
        if i:
            rules.append(f'    input: "out/r{i - 1}.txt"\n')
        rules.append(f'    output: report("out/r{i}.txt", category="Steps")\n'
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


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of :func:`_workflow`, built once for the tests of this module."""
    _browser()
    root = tmp_path_factory.mktemp("report")
    _workflow(root)
    # run inside the workflow's folder (not conftest.run_snakemake, which runs from the
    # repository): the workflow profile and its stylesheet path are found from there
    for args in (["--cores", "1", "--quiet"], ["--report", "report.html"]):
        res = subprocess.run(["snakemake", *args], cwd=root, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    return root / "report.html"


def test_the_report_opens_on_the_verdicts_summary_table(report: Path) -> None:
    probe = _probe(report, _browser())
    assert probe["found"], "no 'Audit verdict' heading on the report's first page"
    # headless Chromium's page is the window less its frame (681 px of 768 measured): stricter
    width, height = probe["viewport"]
    assert width == WIDTH and height <= HEIGHT, probe
    # the case that hides the verdict: content taller than the window
    assert probe["content_height"] > 2 * height, probe
    # at scroll 0 the heading is inside the window
    assert probe["scroll_top"] == 0
    assert 0 <= probe["top"] and probe["bottom"] <= height, probe
    # and so is the summary table's head and its first three rows (the most severe findings),
    # within the width (the template's 32rem column beside the rule graph leaves one row)
    assert probe["header"] == SUMMARY_HEADER and probe["table_rows"] == VERDICT_LINES + 1, probe
    assert probe["top"] < probe["first_rows"][0] and probe["first_rows"][1] <= height, probe
    assert 0 <= probe["table_left"] and probe["table_right"] <= width, probe


# In the table's frame: how wide the table is against the frame, whether the page may scroll
# sideways, and where the last header cell and the last row are once scrolled to the far end.
TABLE_PROBE = """
const table = document.querySelector("table");
const style = e => getComputedStyle(e).overflowX + "/" + getComputedStyle(e).overflowY;
const before = {table_width: table.getBoundingClientRect().width, frame: [innerWidth, innerHeight],
                overflow: [style(document.documentElement), style(document.body)]};
window.scrollTo(1e6, 1e6);
const last = [...table.querySelectorAll("th")].pop().getBoundingClientRect();
const row = [...table.querySelectorAll("tr")].pop().getBoundingClientRect();
return {...before, last_header: [last.left, last.right], last_row: [row.top, row.bottom],
        last_text: [...table.querySelectorAll("th")].pop().textContent};
"""


def _driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium (pip install -e '.[test]')")
    if CHROMEDRIVER is None:
        _missing("Debian's chromium-driver (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = _browser()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(arg)
    # the driver named, so selenium never tries to download one
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def test_a_table_wider_than_the_window_scrolls_into_view(report: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _driver()
    try:
        driver.get(report.as_uri())
        wait = WebDriverWait(driver, 30)
        # as a user: the table's category in the menu's results, the eye button on its row
        wait.until(ec.element_to_be_clickable(
            (By.XPATH, f"//a[normalize-space(.)='{WIDE_CATEGORY}']"))).click()
        wait.until(ec.element_to_be_clickable(
            (By.XPATH, "//tr[td[normalize-space(text())='membership']]//a[@iconname='eye']"))
        ).click()
        frame = wait.until(ec.presence_of_element_located((By.TAG_NAME, "iframe")))
        window = driver.execute_script("return [innerWidth, innerHeight]")
        box = frame.rect
        # the frame itself lies inside the window: nothing of it is cut off on the right
        assert box["x"] >= 0 and box["x"] + box["width"] <= window[0] + 1, (box, window)
        driver.switch_to.frame(frame)
        wait.until(lambda d: d.execute_script("return !!document.querySelector('table')"))
        probe = driver.execute_script(TABLE_PROBE)
    finally:
        driver.quit()
    width, height = probe["frame"]
    # the case: the table is wider than the frame it is shown in
    assert probe["table_width"] > 1.5 * width, probe
    # the page may scroll (no hidden or clipped overflow), and scrolling brings the last column
    # and the last row wholly into view
    assert not any(v in o for o in probe["overflow"] for v in ("hidden", "clip")), probe
    assert probe["last_text"] == WIDE_COLUMNS[-1]
    left, right = probe["last_header"]
    assert 0 <= left and right <= width + 1, probe
    top, bottom = probe["last_row"]
    assert 0 <= top and bottom <= height + 1, probe
