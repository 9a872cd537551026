"""Loading a file never runs code (issue 7, item 5).

A checkpoint or mask file from someone else is read with ``torch.load(weights_only=True)`` or
safetensors only. A crafted pickle -- an object whose ``__reduce__`` calls ``os.system`` -- must be
refused with a CheckpointError, and its command must not run. A source scan keeps it that way.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import pytest
import torch

import causalprune
from causalprune.cli import main
from causalprune.errors import CheckpointError
from causalprune.masks import load_masks, ones_masks, read_masks
from causalprune.paths import RunPaths
from causalprune.storage import load_checkpoint, load_tensors


class Exploit:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted_files(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    marker = tmp_path / "PWNED"
    files = {}
    files["torch.save checkpoint"] = tmp_path / "ckpt.pt"
    torch.save({"model": {"fc.weight": torch.ones(2)}, "extra": Exploit(marker)}, files["torch.save checkpoint"])
    files["mask dict"] = tmp_path / "masks.pt"
    torch.save({"fc1.weight": Exploit(marker)}, files["mask dict"])
    for protocol in (2, 4, pickle.HIGHEST_PROTOCOL):
        files[f"plain pickle p{protocol}"] = tmp_path / f"plain{protocol}.pt"
        with open(files[f"plain pickle p{protocol}"], "wb") as fh:
            pickle.dump(Exploit(marker), fh, protocol=protocol)
    # The exploit is real: a plain unpickle of the first file would create the marker.
    assert not marker.exists()
    return marker, files


def test_crafted_pickles_are_refused_and_do_not_run(tmp_path):
    marker, files = _crafted_files(tmp_path)
    for what, path in files.items():
        for load in (load_checkpoint, load_tensors, read_masks):
            with pytest.raises(CheckpointError) as info:
                load(path)
            msg = str(info.value)
            assert str(path) in msg and "\n" not in msg, (what, load.__name__)
            assert "refusing" in msg or "not a PyTorch checkpoint" in msg, msg
        assert not marker.exists(), f"loading the {what} ran its code"
    # The control: the payload is live -- a plain unpickle (which the package never does) runs it.
    with open(files["plain pickle p4"], "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_forbidden_global_is_named(tmp_path):
    marker, files = _crafted_files(tmp_path)
    with pytest.raises(CheckpointError, match=r"refusing to load it") as info:
        load_checkpoint(files["torch.save checkpoint"])
    assert "system" in str(info.value), "the message names what the file asked for"


def test_load_masks_refuses_crafted_pickle_and_leaves_model_alone(tmp_path):
    from torch import nn
    from torch.nn.utils import prune

    marker, files = _crafted_files(tmp_path)
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(CheckpointError):
        load_masks(model, files["mask dict"])
    assert not prune.is_pruned(model) and not marker.exists()


def test_plain_tensor_checkpoints_still_load(tmp_path):
    """The control: what torch.save writes for tensors, numbers, strings and dicts loads fine."""
    from torch import nn

    model = nn.Sequential(nn.Linear(3, 2))
    obj = {"model": model.state_dict(), "epoch": 3, "val": 91.5, "name": "x", "optim": {"lr": [1e-3]}}
    torch.save(obj, tmp_path / "ok.pt")
    back = load_checkpoint(tmp_path / "ok.pt")
    assert back["epoch"] == 3 and torch.equal(back["model"]["0.weight"], model.state_dict()["0.weight"])
    torch.save({k: v.to(torch.uint8) for k, v in ones_masks(model).items()}, tmp_path / "m.pt")
    assert set(read_masks(tmp_path / "m.pt")) == {"0.weight"}


def test_safetensors_with_a_lying_header_is_refused(tmp_path):
    """safetensors cannot carry code; a header that claims absurd sizes is an error, not an OOM."""
    f = tmp_path / "lie.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 1 << 42]}}).encode()
    f.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_tensors(f)
    g = tmp_path / "huge_header.safetensors"
    g.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_tensors(g)


def test_resuming_from_a_crafted_checkpoint_is_refused(capsys, tmp_path):
    argv = ["run", "--preset", "quick", "--device", "cpu", "--method", "magnitude", "--n-pre", "1", "--n-iter", "1",
            "--n-post", "1", "--max-steps-per-epoch", "3", "--out", str(tmp_path / "out"), "--name", "r"]
    assert main(argv) == 0
    paths = RunPaths(tmp_path / "out" / "r")
    state = json.loads(paths.state.read_text())
    state.update(iterations_done=0, post_done=False, done=False)  # as if killed before iteration 1
    paths.state.write_text(json.dumps(state))
    marker, files = _crafted_files(tmp_path)
    shutil.copy(files["torch.save checkpoint"], paths.pretrained)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pretrained.pt" in err and "refusing" in err and "Traceback" not in err
    assert not marker.exists()


# -- the source itself -----------------------------------------------------------------------------------
UNSAFE = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("dill", "load"), ("joblib", "load"),
          ("yaml", "load"), ("yaml", "unsafe_load"), ("marshal", "loads"), ("shelve", "open")}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            yield node, node.func.value.id, node.func.attr


def test_source_loads_only_with_weights_only_or_safetensors():
    root = Path(causalprune.__file__).parent
    problems = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, owner, attr in _calls(tree):
            where = f"{path.relative_to(root)}:{node.lineno}"
            kw = {k.arg: k.value for k in node.keywords}
            if (owner, attr) == ("torch", "load"):
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            elif (owner, attr) in UNSAFE:
                problems.append(f"{where}: {owner}.{attr}")
            elif (owner, attr) == ("np", "load") or (owner, attr) == ("numpy", "load"):
                ap = kw.get("allow_pickle")
                if isinstance(ap, ast.Constant) and ap.value is True:
                    problems.append(f"{where}: numpy load with allow_pickle=True")
    assert not problems, "unsafe loading in the source:\n" + "\n".join(problems)
