"""`masks`, `analyze` and `report` on real runs of a tiny sweep (digits, quick preset shortened),
plus the report's findings on synthetic rows.

The sweep is made once per session under the session's base temp folder; the browser test builds
the same one there, so whichever file runs second reuses the finished runs.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from causalprune.cli import main
from causalprune.errors import CheckpointError
from causalprune.paths import RunPaths
from causalprune.results.runs import read_runs
from causalprune.results.sweep_files import read_sweep_rows
from causalprune.storage import write_json

# quick preset on digits, cut to one epoch of 6 steps per stage: every stage and file is real, and
# the 8 runs cost ~20 s of CPU. These two L1_coeff values empty no layer (1e-11 would).
TINY = ["--preset", "quick", "--n-pre", "1", "--n-iter", "1", "--n-prune", "1", "--n-post", "1",
        "--max-steps-per-epoch", "6", "--device", "cpu", "--l1-grid", "1e-13,1e-12", "--seeds", "0"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_tiny_sweep(root: Path) -> Path:
    """Two causal runs and their six baselines; returns the sweep folder (idempotent)."""
    assert main(["sweep", "--out", str(root), *TINY]) == 0
    (folder,) = root.glob("sweep-*")
    return folder


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return make_tiny_sweep(tmp_path_factory.getbasetemp() / "report-sweep")


@pytest.fixture(scope="module")
def runs(sweep):
    return read_runs([r["run_dir"] for r in read_sweep_rows(sweep)])


def _by_curve(runs, curve):
    return [r for r in runs if r["curve"] == curve]


# -- run folders -> rows -------------------------------------------------------------------------
@pytest.mark.slow
def test_rows_match_the_run_folders(sweep, runs):
    csv_rows = read_sweep_rows(sweep)
    assert len(runs) == len(csv_rows) == 8
    for row, c in zip(runs, csv_rows):
        summary = json.loads(RunPaths(row["run_dir"]).summary.read_text())
        assert row["percent_pruned"] == summary["percent_pruned"] == pytest.approx(c["percent_pruned"])
        assert row["curve"] == c["curve"] and row["test_accuracy"] == summary["test_accuracy"]
    assert len({r["label"] for r in runs}) == len(runs)
    assert {r["curve"] for r in runs} == {"causal", "magnitude", "magnitude (layer-matched)", "random (layer-matched)"}
    # a folder of run folders expands to all of them
    assert {r["run_dir"] for r in read_runs([sweep.parent])} == {r["run_dir"] for r in runs}


def test_rows_refuse_non_runs_and_unfinished_runs(tmp_path):
    with pytest.raises(CheckpointError, match="not a run folder"):
        read_runs([tmp_path])
    write_json(RunPaths(tmp_path / "r").config, {"method": "causal", "model": "mlp", "dataset": "digits", "seed": 0})
    with pytest.raises(CheckpointError, match="has not finished"):
        read_runs([tmp_path / "r"])


# -- masks ---------------------------------------------------------------------------------------
def _read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_masks_command_tables_add_up(runs, tmp_path, capsys):
    dirs = [r["run_dir"] for r in runs[:4]]
    assert main(["masks", *dirs, "--out", str(tmp_path / "ov")]) == 0
    pairs = _read_csv(tmp_path / "ov" / "overlaps.csv")
    layers = _read_csv(tmp_path / "ov" / "overlaps_per_layer.csv")
    assert len(pairs) == 4 * 3 // 2
    pruned = {r["label"]: r["percent_pruned"] for r in runs}
    for p in pairs:
        both, oa, ob, nei = (float(p[k]) for k in ("both", "only_a", "only_b", "neither"))
        assert both + oa + ob + nei == pytest.approx(100.0)
        assert both + oa == pytest.approx(pruned[p["run_a"]]) and both + ob == pytest.approx(pruned[p["run_b"]])
        mine = [x for x in layers if (x["run_a"], x["run_b"]) == (p["run_a"], p["run_b"])]
        total = sum(int(x["weights"]) for x in mine)
        # the per-layer tables, weighted by layer size, give the overall table
        assert sum(float(x["both"]) * int(x["weights"]) for x in mine) / total == pytest.approx(both)
    png = (tmp_path / "ov" / "overlaps.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


@pytest.mark.slow
def test_masks_vs_draws_rows_against_columns(runs, tmp_path):
    causal = [r["run_dir"] for r in _by_curve(runs, "causal")]
    others = [r["run_dir"] for r in _by_curve(runs, "magnitude")]
    assert main(["masks", *causal, "--vs", *others, "--out", str(tmp_path)]) == 0
    assert len(_read_csv(tmp_path / "overlaps.csv")) == 6  # every pair of the four runs
    assert (tmp_path / "overlaps.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
def test_masks_needs_two_runs(runs, capsys, tmp_path):
    assert main(["masks", runs[0]["run_dir"], "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "at least two runs" in err and len(err.strip().splitlines()) == 1


# -- analyze -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_final_model_reloads_with_its_masks_and_accuracy(runs):
    from causalprune.masks import current_masks, sparsity
    from causalprune.results.flatness import load_final_model
    from causalprune.train import evaluate

    row = _by_curve(runs, "causal")[0]
    model, cfg, data = load_final_model(row["run_dir"])
    assert sparsity(current_masks(model)) == pytest.approx(row["percent_pruned"])
    _, acc = evaluate(model, data.test)
    assert acc == pytest.approx(row["test_accuracy"], abs=1e-9)


@pytest.mark.slow
def test_analyze_writes_eigenvalues_and_landscape_and_reuses_them(runs, capsys):
    from causalprune.results.flatness import analysis_batches, load_final_model

    row = _by_curve(runs, "causal")[0]
    argv = ["analyze", row["run_dir"], "--hessian", "--landscape", "--k", "2", "--grid", "7", "--batches", "2",
            "--iters", "30", "--device", "cpu"]
    assert main(argv) == 0
    paths = RunPaths(row["run_dir"])
    eig = json.loads(paths.eigenvalues.read_text())
    ev = eig["eigenvalues"]
    assert len(ev) == 2 and ev == sorted(ev, reverse=True) and all(np.isfinite(ev))
    assert eig["percent_pruned"] == pytest.approx(row["percent_pruned"])
    surf = np.load(paths.landscape_npz)
    assert surf["loss"].shape == (7, 7) and np.allclose(surf["alpha"], -surf["alpha"][::-1])
    # the centre of the grid is the trained model itself, on the same batches
    model, _, data = load_final_model(row["run_dir"])
    with torch.no_grad():
        batches = analysis_batches(data, 2, 0)
        n = sum(len(y) for _, y in batches)
        loss = sum(F.cross_entropy(model(x), y, reduction="sum").item() for x, y in batches) / n
    assert surf["loss"][3, 3] == pytest.approx(loss, rel=1e-5)
    assert paths.landscape_png.read_bytes().startswith(PNG_MAGIC)
    # a rerun with the same settings reuses both results; other settings recompute
    stamp = paths.eigenvalues.stat().st_mtime_ns, paths.landscape_npz.stat().st_mtime_ns
    assert main(argv) == 0
    assert (paths.eigenvalues.stat().st_mtime_ns, paths.landscape_npz.stat().st_mtime_ns) == stamp
    assert main(["analyze", row["run_dir"], "--hessian", "--k", "1", "--batches", "2", "--iters", "30"]) == 0
    assert paths.eigenvalues.stat().st_mtime_ns != stamp[0]


# -- report --------------------------------------------------------------------------------------
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.details, self.cells, self._cell = [], [], 0, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag in ("a", "link", "script", "iframe") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        self.details += tag == "details"
        if tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None


@pytest.mark.slow
def test_report_is_self_contained_and_shows_every_run(sweep, runs, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "--sweep", str(sweep), "--out", str(out)]) == 0
    text = out.read_text()
    page = _Page()
    page.feed(text)
    assert page.imgs and all(s.startswith("data:image/png;base64,") for s in page.imgs)
    for src in page.imgs:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert all(link.startswith("#") for link in page.links), "only in-page anchors, nothing fetched"
    assert "<script" not in text
    assert page.details == len(runs)  # one configuration block per run
    for r in runs:
        i = page.cells.index(r["label"])  # first cell of the run's row in the runs table
        assert f"{r['percent_pruned']:.2f}" in page.cells[i:i + 12] and f"{r['test_accuracy']:.2f}" in page.cells[i:i + 12]
    for heading in ("Phase shift", "Mask overlaps", "Hessian eigenvalues", "Loss landscapes", "Configurations"):
        assert f">{heading}</h2>" in text
    widths = json.loads((sweep / "phase_width.json").read_text())["curves"]
    assert f"{widths['causal']['width_pp']:.1f}" in text


@pytest.mark.slow
def test_report_of_runs_without_sweep_says_how_to_get_one(runs, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", runs[0]["run_dir"], runs[1]["run_dir"], "--out", str(out)]) == 0
    text = out.read_text()
    assert "No sweep given" in text and "causal-prune sweep" in text


@pytest.mark.slow
def test_report_shows_no_absolute_path(sweep, runs, tmp_path, tmp_path_factory):
    ov, out = tmp_path / "ov", tmp_path / "deep" / "r.html"
    assert main(["masks", runs[0]["run_dir"], runs[1]["run_dir"], "--out", str(ov)]) == 0
    assert main(["report", *(r["run_dir"] for r in runs[:3]), "--sweep", str(sweep), "--masks-csv",
                 str(ov / "overlaps.csv"), "--out", str(out)]) == 0
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", out.read_text())
    base = tmp_path_factory.getbasetemp()
    for absolute in {str(base), os.path.realpath(base), str(tmp_path), os.path.realpath(tmp_path)}:
        assert absolute not in text
    # what it shows instead leads from the report's folder to the runs, the sweep and the csv
    for shown in (os.path.relpath(runs[0]["run_dir"], out.parent), os.path.relpath(sweep, out.parent),
                  "../ov/overlaps.csv"):
        assert shown in text and (out.parent / shown).exists()
    assert "--out r.html</code>" in text


def test_paths_are_shown_relative_to_the_report_folder(tmp_path):
    from causalprune.report.relpaths import common_out, path_shower, relative_to

    show = path_shower(tmp_path / "site" / "report.html", [tmp_path / "runs" / "a", tmp_path / "runs" / "b"])
    assert show(tmp_path / "runs" / "a") == "../runs/a"
    assert show(tmp_path / "site" / "ov.csv") == "ov.csv"
    assert common_out([tmp_path / "runs" / "a", tmp_path / "runs" / "b"]) == os.path.realpath(tmp_path / "runs")
    assert relative_to("/x/y", [None]) == "y"  # no base admits a relative path: the name alone


def test_report_without_runs_is_one_line_error(capsys, tmp_path):
    assert main(["report", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "report needs run folders" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


# -- findings on synthetic rows ------------------------------------------------------------------
def _rows(causal_acc, matched_acc, global_acc, random_acc, seeds=range(6)):
    # six seeds: the fewest with which a two-sided signed-rank test on one difference per seed can
    # reach p < 0.05, so that a consistent difference gets a verdict
    rows = []
    for s in seeds:
        for pp in (20.0, 50.0, 80.0):
            src = f"/runs/causal-{s}-{pp}"
            rows.append({"curve": "causal", "seed": s, "percent_pruned": pp, "test_accuracy": causal_acc(pp),
                         "run_dir": src, "match_layers": ""})
            for curve, acc in (("magnitude (layer-matched)", matched_acc), ("random (layer-matched)", random_acc)):
                rows.append({"curve": curve, "seed": s, "percent_pruned": pp, "test_accuracy": acc(pp),
                             "run_dir": f"/runs/{curve[:3]}-{s}-{pp}", "match_layers": src})
            rows.append({"curve": "magnitude", "seed": s, "percent_pruned": pp + 0.01, "test_accuracy": global_acc(pp),
                         "run_dir": f"/runs/mag-{s}-{pp}", "match_layers": ""})
    return rows


def test_findings_allocation_explains_the_gap():
    from causalprune.analysis.findings import layer_matched_findings

    f = layer_matched_findings(_rows(lambda p: 90 - 0.1 * p, lambda p: 90 - 0.1 * p, lambda p: 90 - 0.2 * p,
                                     lambda p: 80 - 0.3 * p))
    g = f["gaps"]
    assert g["magnitude"]["verdict"] == "higher" and g["magnitude"]["mean"] == pytest.approx(5.0, abs=0.01)
    assert g["magnitude (layer-matched)"]["verdict"] == "level"
    assert g["random (layer-matched)"]["mean"] == pytest.approx(10 + 0.2 * 50)
    text = " ".join(f["text"])
    assert "how much each layer loses, not which weights" in text and "matters at these" in text


def test_findings_choice_of_weights_and_opposite_case():
    from causalprune.analysis.findings import layer_matched_findings

    better = layer_matched_findings(_rows(lambda p: 90.0, lambda p: 87.0, lambda p: 85.0, lambda p: 86.0))
    assert better["gaps"]["magnitude (layer-matched)"]["verdict"] == "higher"
    assert "picks better weights within each layer" in " ".join(better["text"])
    assert "+2.00 points come from the per-layer allocation and +3.00 from the choice" in " ".join(better["text"])
    worse = layer_matched_findings(_rows(lambda p: 85.0, lambda p: 88.0, lambda p: 84.0, lambda p: 84.0))
    assert worse["gaps"]["magnitude (layer-matched)"]["verdict"] == "lower"
    assert "magnitude picks better weights than causal" in " ".join(worse["text"])


def test_findings_eigenvalues_and_phase_verdicts():
    from causalprune.analysis.findings import eigen_findings, phase_findings

    rows = [{"curve": "causal", "percent_pruned": 50.0, "test_accuracy": 90.0, "eigenvalues": [2.0, 1.0]},
            {"curve": "magnitude", "percent_pruned": 51.0, "test_accuracy": 89.0, "eigenvalues": [4.0, 3.0]}]
    assert eigen_findings(rows)["verdict"] == "smaller"
    rows[0]["eigenvalues"] = [9.0]
    e = eigen_findings(rows)
    assert e["verdict"] == "larger" and "opposite of the paper" in e["text"][0]
    assert eigen_findings(rows[1:])["verdict"] == "none"
    w = {"causal": {"width_pp": 5.0, "per_seed": {"0": 4.0, "1": 6.0}, "runs": 12},
         "magnitude": {"width_pp": 30.0, "per_seed": {"0": 28.0, "1": 33.0}, "runs": 12}}
    assert phase_findings(w)["verdict"] == "sharper"
    w["causal"]["width_pp"], w["causal"]["per_seed"] = 29.5, {"0": 20.0, "1": 35.0}
    assert phase_findings(w)["verdict"] == "equal"
    w["causal"]["width_pp"], w["causal"]["per_seed"] = 60.0, {"0": 55.0, "1": 65.0}
    assert "contrary to the paper" in phase_findings(w)["text"][0]
    w["causal"]["width_pp"] = None
    assert phase_findings(w)["verdict"] == "none" and phase_findings(None)["verdict"] == "none"
