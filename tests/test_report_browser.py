"""The HTML report in a real browser: headless Chromium renders it, every image loads, the console
stays clean, and a screenshot is kept. A broken control page proves the checks can fail.

Runs come from the tiny digits sweep of test_report_cli (made once per session, reused if that
file ran first), analysed with small settings so every section of the report has content.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from causalprune.cli import main

from .test_report_cli import PNG_MAGIC, make_tiny_sweep

pytestmark = pytest.mark.slow

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# Injected into a *copy* of the report (the report itself has no script): after the load event,
# which waits for every image, write each image's naturalWidth into the DOM for --dump-dom.
_CHECK = ('<script>window.addEventListener("load",function(){var o=document.createElement("pre");'
          'o.id="cp-check";o.textContent=JSON.stringify(Array.prototype.map.call(document.images,'
          'function(i){return i.naturalWidth;}));document.body.appendChild(o);});</script>')


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium to drive. The test never installs it: `make test` runs `make chromium`
    first. Missing, it fails the tests under CI=true and skips them, with the reason, elsewhere."""
    found = _find_chromium()
    if found is None:
        why = "headless Chromium is not installed (`make chromium` installs it; `make test` runs it first)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI=true, where the browser checks must run", pytrace=False)
        pytest.skip(f"{why}; skipped because CI is not 'true'")
    return found


def _run(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [chromium, *_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _console_problems(stderr: str, page: Path) -> list[str]:
    """Console lines about the page: errors, uncaught exceptions (any console output at all
    counts, since the report has no script that could log)."""
    return [ln for ln in stderr.splitlines()
            if ("CONSOLE" in ln or "Uncaught" in ln) and (page.name in ln or "Uncaught" in ln)]


def _natural_widths(chromium: str, tmp: Path, page: Path) -> list[int]:
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(page.read_text().replace("</body>", _CHECK + "</body>"))
    dom = _run(chromium, tmp, "--dump-dom", probe.as_uri()).stdout
    found = re.search(r'id="cp-check">([^<]*)<', dom)
    assert found, "the probe script did not run"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from causalprune.results.sweep_files import read_sweep_rows

    sweep = make_tiny_sweep(tmp_path_factory.getbasetemp() / "report-sweep")
    rows = read_sweep_rows(sweep)
    causal = [r["run_dir"] for r in rows if r["curve"] == "causal"]
    magnitude = [r["run_dir"] for r in rows if r["curve"] == "magnitude"]
    chosen = causal + [r["run_dir"] for r in rows if r["curve"] != "causal"]
    # small settings: the analyses' numbers are tested elsewhere, here they only have to be drawn
    assert main(["analyze", causal[-1], magnitude[-1], "--k", "2", "--grid", "5", "--batches", "1",
                 "--iters", "30", "--device", "cpu"]) == 0
    out = tmp_path_factory.mktemp("report")
    assert main(["masks", *chosen[:3], "--out", str(out / "ov")]) == 0
    page = out / "report.html"
    assert main(["report", *chosen, "--sweep", str(sweep), "--masks-csv", str(out / "ov" / "overlaps.csv"),
                 "--out", str(page)]) == 0
    return page


def test_report_renders_with_its_table_and_a_clean_console(chromium, report, tmp_path):
    res = _run(chromium, tmp_path, "--dump-dom", report.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "<table" in dom and "Runs (Table 2 style)" in dom and "causal l1=1e-12 s0" in dom
    assert "Findings" in dom and "Phase shift" in dom
    assert _console_problems(res.stderr, report) == []


def test_every_image_is_a_png_that_the_browser_decodes(chromium, report, tmp_path):
    import base64

    srcs = re.findall(r'<img src="([^"]+)"', report.read_text())
    assert len(srcs) >= 7  # phase, hparams, 2 overlap maps, eigenvalues, 2 landscapes, the --masks-csv map
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        width, height = struct.unpack(">II", png[16:24])  # IHDR
        assert png.startswith(PNG_MAGIC) and width > 0 and height > 0
    widths = _natural_widths(chromium, tmp_path, report)
    assert len(widths) == len(srcs) and all(w > 0 for w in widths)


def test_screenshot_is_written_and_kept(chromium, report, tmp_path_factory):
    keep = Path(os.environ.get("CAUSALPRUNE_TEST_ARTIFACTS") or tmp_path_factory.getbasetemp() / "artifacts")
    keep.mkdir(parents=True, exist_ok=True)
    shot = keep / "report.png"
    shot.unlink(missing_ok=True)
    res = _run(chromium, tmp_path_factory.mktemp("shot"), f"--screenshot={shot}", "--window-size=1200,2000",
               report.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    png = shot.read_bytes()
    assert png.startswith(PNG_MAGIC) and struct.unpack(">II", png[16:24]) == (1200, 2000)
    assert len(png) > 50_000  # a blank page compresses to a few kB
    print(f"\nreport screenshot kept at {shot} (report: {report})")


def test_the_checks_catch_a_broken_page(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><table><tr><td>x</td></tr></table>'
                   '<img src="data:image/png;base64,AAAA"><script>notDefined();</script></body></html>')
    res = _run(chromium, tmp_path, "--dump-dom", bad.as_uri())
    assert any("Uncaught" in ln for ln in _console_problems(res.stderr, bad))
    assert _natural_widths(chromium, tmp_path, bad) == [0]
