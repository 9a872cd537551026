"""`causal-prune compare`: five methods under one protocol, one table that names its runs portably."""

from __future__ import annotations

import csv
from pathlib import Path

from causalprune.cli import main
from causalprune.storage import read_json


def test_compare_writes_a_portable_table_of_five_runs(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["compare", "--preset", "quick", "--device", "cpu", "--n-iter", "1", "--n-post", "1",
                 "--max-steps-per-epoch", "4", "--match-sparsity", "--out", str(out)])
    assert code == 0
    (folder,) = [p for p in out.iterdir() if p.name.startswith("compare-")]
    rows = list(csv.DictReader(open(folder / "comparison.csv", newline="")))
    assert [r["method"] for r in rows] == ["none", "magnitude", "magnitude-matched", "causal-budget", "causal"]
    text = (folder / "comparison.csv").read_text() + (folder / "comparison.md").read_text()
    assert str(tmp_path) not in text, "the table must not carry the machine's absolute paths"
    for r in rows:
        run = (folder / r["run_dir"]).resolve()
        summary = read_json(run / "summary.json")
        assert summary["method"] == r["method"].removesuffix("-matched")
        assert float(r["test_accuracy"]) == summary["test_accuracy"]
    pruned = {r["method"]: float(r["percent_pruned"]) for r in rows}
    assert pruned["none"] == 0 and pruned["causal"] > 0
    # --match-sparsity: magnitude prunes causal's share, to within one weight
    nonzero = {r["method"]: int(r["prunable_nonzero"]) for r in rows}
    assert abs(nonzero["magnitude"] - nonzero["causal"]) <= 1
    assert (folder / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    table, sentence = Path(folder / "comparison.md").read_text().rstrip().rsplit("\n", 1)
    assert table.rstrip() in printed and printed.rstrip().endswith(sentence)
    assert "one seed of a short protocol" in sentence
    # one iteration: the layer-matched and causal-budget runs prune each layer exactly as causal does
    layers = {r["method"]: read_json((folder / r["run_dir"]).resolve() / "summary.json")["per_layer"] for r in rows}
    assert layers["magnitude-matched"] == layers["causal"] == layers["causal-budget"]
