"""The bad-input catalogue (issue 7, item 4). Every fault must end in one line ``error: ...`` on
stderr, exit status 2, no traceback, and must leave the results already on disk as they were."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from causalprune.cli import main
from causalprune.masks import read_masks
from causalprune.paths import RunPaths
from causalprune.storage import load_checkpoint

from .datafiles import write_fmnist

TINY = ["--preset", "quick", "--device", "cpu", "--n-pre", "2", "--n-iter", "2", "--n-prune", "1",
        "--n-post", "2", "--max-steps-per-epoch", "5"]


def cli(capsys, *argv: str) -> tuple[int, str]:
    """Run the command line in this process; (exit status, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own checks (types, choices)
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    # A download shows its progress bar on stderr before failing; everything else is one line.
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "%|" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    err = lines[0]
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


def snapshot(folder: Path) -> dict[str, str]:
    """Content hash of every file. Skipped: the lock file (it holds the pid of the last user) and
    config.json, whose runtime settings (--out, --device) are those of the latest invocation."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (".lock", "config.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> RunPaths:
    """One finished causal run of the tiny protocol; tests work on copies of it."""
    out = tmp_path_factory.mktemp("finished")
    assert main(["run", *TINY, "--out", str(out), "--name", "done"]) == 0
    return RunPaths(out / "done")


@pytest.fixture
def copy_of(finished, tmp_path):
    def make(name: str = "done") -> RunPaths:
        shutil.copytree(finished.root, tmp_path / name)
        return RunPaths(tmp_path / name)
    return make


def edit_state(paths: RunPaths, **values) -> None:
    state = json.loads(paths.state.read_text())
    state.update(values)
    paths.state.write_text(json.dumps(state))


# -- corrupt or truncated files of a run --------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(512))


# (file to damage, how, state.json edits that make the resume need that file, expected words)
CORRUPTIONS = [
    ("checkpoints/best.pt", _truncate, {"done": False}, "best.pt is corrupt"),
    ("checkpoints/iter_01.pt", _truncate, {"iterations_done": 1, "post_done": False, "done": False},
     "iter_01.pt is corrupt"),
    ("checkpoints/pretrained.pt", _garbage, {"iterations_done": 0, "post_done": False, "done": False},
     "pretrained.pt is corrupt"),
    ("state.json", _truncate, {}, "state.json is not valid JSON"),
    ("config.json", _truncate, {}, "config.json is not valid JSON"),
    ("metrics.csv", _truncate, {}, "metrics.csv has"),
]


@pytest.mark.parametrize("rel,damage,state,needle", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_run_file_on_resume(capsys, copy_of, rel, damage, state, needle):
    paths = copy_of()
    if state:
        edit_state(paths, **state)
    damage(paths.root / rel)
    before = snapshot(paths.root)
    code, err = cli(capsys, "run", *TINY, "--out", str(paths.root.parent), "--name", "done")
    assert_one_line_error(code, err, needle)
    assert snapshot(paths.root) == before, "a failed resume must not change or delete anything"


def test_corrupt_checkpoint_error_says_how_to_recover(capsys, copy_of):
    paths = copy_of()
    edit_state(paths, done=False)
    _truncate(paths.best)
    code, err = cli(capsys, "run", *TINY, "--out", str(paths.root.parent), "--name", "done")
    assert_one_line_error(code, err, "--overwrite")


def test_finished_run_rerun_does_nothing(capsys, copy_of):
    paths = copy_of()
    before = snapshot(paths.root)
    assert cli(capsys, "run", *TINY, "--out", str(paths.root.parent), "--name", "done")[0] == 0
    assert snapshot(paths.root) == before


# -- masks that do not fit the model -------------------------------------------------------------------
def _mlp():
    from causalprune.data import dataset_spec
    from causalprune.models import build_model

    return build_model("mlp", dataset_spec("digits", "mlp"))


def test_load_masks_refuses_masks_of_another_model(tmp_path, finished):
    from torch.nn.utils import prune

    from causalprune.errors import CheckpointError, MaskError
    from causalprune.masks import load_masks, save_masks

    good = read_masks(finished.final_masks)
    cases = {
        "renamed": ({("conv9.weight" if k == "fc1.weight" else k): v for k, v in good.items()},
                    MaskError, "conv9.weight"),
        "reshaped": ({k: (v[:, :-1].contiguous() if k == "fc2.weight" else v) for k, v in good.items()},
                     MaskError, "fc2.weight has shape"),
        "not 0/1": ({k: v * 2 for k, v in good.items()}, MaskError, "not a 0/1 mask"),
    }
    for name, (masks, error, needle) in cases.items():
        f = tmp_path / f"{name.replace(' ', '_').replace('/', '')}.safetensors"
        save_masks(f, masks) if name != "not 0/1" else _save_raw(f, masks)
        model = _mlp()
        with pytest.raises(error, match=needle):
            load_masks(model, f)
        assert not any(prune.is_pruned(m) for m in model.modules()), "a refused mask file changed the model"
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(finished.final_masks.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_masks(_mlp(), truncated)
    model = _mlp()
    assert torch.equal(load_masks(model, finished.final_masks)["fc1.weight"], good["fc1.weight"])


def _save_raw(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def test_match_layers_with_masks_of_another_model_fails_before_training(capsys, copy_of, tmp_path):
    ref = copy_of("ref")
    masks = read_masks(ref.final_masks)
    masks["fc2.weight"] = masks["fc2.weight"][:, :50].contiguous()
    from causalprune.masks import save_masks

    save_masks(ref.final_masks, masks)
    for it in (1, 2):
        save_masks(ref.masks(it), masks)
    out = tmp_path / "out"
    code, err = cli(capsys, "run", *TINY, "--method", "magnitude", "--match-layers", str(ref.root),
                    "--out", str(out), "--name", "m")
    assert_one_line_error(code, err, "fc2.weight has shape")
    assert not (out / "m" / "checkpoints").exists(), "refused before any training"


# -- data folders ---------------------------------------------------------------------------------------
def _png(path: Path, value: int = 128) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), value).save(path)


def _image_folder(root: Path, classes=("a", "b"), per_class: int = 4) -> Path:
    for split in ("train", "test"):
        for c in classes:
            for i in range(per_class):
                _png(root / split / c / f"{i}.png", 40 * i)
    return root


def _folder_missing(root):
    return root / "nope"


def _folder_empty(root):
    root.mkdir()
    return root


def _no_classes(root):
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    return root


def _classes_without_images(root):
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
    return root


def _unreadable_image(root):
    _image_folder(root)
    (root / "train" / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    return root


def _unreadable_first_image(root):
    _image_folder(root)
    (root / "train" / "a" / "0.png").write_bytes(b"not an image")
    return root


DATA_FAULTS = [
    (_folder_missing, "does not exist"),
    (_folder_empty, "training folder"),
    (_no_classes, "no class sub-folders"),
    (_classes_without_images, "holds no images"),
    (_unreadable_image, "cannot read image"),
    (_unreadable_first_image, "cannot read image"),
]


@pytest.mark.parametrize("make,needle", DATA_FAULTS, ids=[f[0].__name__.strip("_") for f in DATA_FAULTS])
def test_bad_image_folder(capsys, tmp_path, make, needle):
    data = make(tmp_path / "data")
    code, err = cli(capsys, "run", *TINY, "--dataset", "imagefolder", "--data-dir", str(data),
                    "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, needle)


def test_good_image_folder_runs(capsys, tmp_path):
    """The control for the faults above: the same folder without the fault trains."""
    data = _image_folder(tmp_path / "data")
    code = main(["run", *TINY, "--dataset", "imagefolder", "--data-dir", str(data), "--method", "magnitude",
                 "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err


# -- interrupted downloads ---------------------------------------------------------------------------------
def test_truncated_fashion_mnist_download(capsys, tmp_path):
    raw = tmp_path / "fm" / "FashionMNIST" / "raw"
    write_fmnist(raw, n_train=40, n_test=20)
    _truncate(raw / "train-images-idx3-ubyte.gz")  # the transfer stopped a third of the way
    code, err = cli(capsys, "run", *TINY, "--dataset", "fashion-mnist", "--model", "mlp", "--data-dir",
                    str(tmp_path / "fm"), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "train-images-idx3-ubyte.gz", "truncated", "fetch it again")


class _DroppedConnection:
    """An HTTP response that delivers 1 KB and then loses the connection."""

    length = 170_000_000

    def __init__(self, *args, **kwargs):
        self.sent = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n=-1):
        if not self.sent:
            self.sent = True
            return b"\x1f\x8b" + b"\0" * 1022
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")


def test_interrupted_cifar10_download(capsys, tmp_path, monkeypatch):
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", _DroppedConnection)
    # torchvision first asks where the URL redirects to; answer without the network.
    monkeypatch.setattr("torchvision.datasets.utils._get_redirect_url", lambda url, max_hops=3: url)
    data = tmp_path / "cifar"
    argv = ["run", *TINY, "--dataset", "cifar10", "--model", "mlp", "--data-dir", str(data),
            "--out", str(tmp_path / "out")]
    code, err = cli(capsys, *argv)
    assert_one_line_error(code, err, "CIFAR-10", "download failed", "cifar-10-python.tar.gz")
    # The partial archive is now on disk; the next attempt must still fail clearly, not crash on it.
    assert (data / "cifar-10-python.tar.gz").exists()
    code, err = cli(capsys, *argv)
    assert_one_line_error(code, err, "partial download")


# -- hyperparameters, config files, device --------------------------------------------------------------
@pytest.mark.parametrize("argv,needle", [
    (["--momentum", "1"], "--momentum must be in [0, 1)"),
    (["--val-frac", "0"], "--val-frac"),
    (["--val-frac", "1"], "--val-frac"),
    (["--batch-size", "0"], "--batch-size must be > 0"),
    (["--lasso-epochs", "0"], "--lasso-epochs must be > 0"),
    (["--n-iter", "-1"], "--n-iter must be >= 0"),
    (["--lr-train", "nan"], "--lr-train must be a positive finite number"),
    (["--lr-prune", "inf"], "--lr-prune must be a positive finite number"),
    (["--lasso-power-t", "nan"], "--lasso-power-t must be a finite number"),
    (["--target-sparsity", "nan"], "--target-sparsity must be a finite number"),
    (["--min-delta", "-1"], "--min-delta"),
    (["--record-budget", "lots"], "--record-budget"),
    (["--n-pre", "two"], "invalid int value"),
    (["--solver", "magic"], "invalid choice"),
    (["--preset", "huge"], "unknown preset"),
    (["--match-layers", "/nonexistent/run", "--method", "magnitude"], "/nonexistent/run"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_out_of_range_settings(capsys, tmp_path, argv, needle):
    out = tmp_path / "out"
    code, err = cli(capsys, "run", "--preset", "quick", "--device", "cpu", *argv, "--out", str(out))
    assert_one_line_error(code, err, needle)
    assert not out.exists() or not any(out.rglob("checkpoints")), "refused before any training"


@pytest.mark.parametrize("text,suffix,needle", [
    ("n_iter: [1, 2\n", ".yaml", "not valid YAML"),
    ("{\"n_iter\": 3,}", ".json", "not valid JSON"),
    ("- n_iter\n- 3\n", ".yaml", "must hold a mapping"),
    ("n_itre: 3\n", ".yaml", "unknown setting 'n_itre'"),
    ("n_iter: three\n", ".yaml", "'n_iter' must be a int"),
    ("n_pre: 2001-13-45\n", ".yaml", "not valid YAML"),
    ('{"batch_size": 1e999}', ".json", "'batch_size' must be a int"),
    ('{"lr_train": 1%s}' % ("0" * 400), ".json", "'lr_train' must be a float"),
])
def test_bad_config_file(capsys, tmp_path, text, suffix, needle):
    f = tmp_path / f"c{suffix}"
    f.write_text(text)
    code, err = cli(capsys, "run", "--config", str(f), "--out", str(tmp_path / "out"), "--dry-run")
    assert_one_line_error(code, err, needle)


def test_config_path_is_a_folder(capsys, tmp_path):
    code, err = cli(capsys, "run", "--config", str(tmp_path), "--dry-run")
    assert_one_line_error(code, err, "is not a file")


def test_cuda_requested_without_gpu(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "out"
    code, err = cli(capsys, "run", *TINY, "--device", "cuda", "--out", str(out))
    assert_one_line_error(code, err, "no CUDA GPU", "--device cpu")
    assert not out.exists(), "nothing is written before the device is known to exist"


# -- training that cannot go on ------------------------------------------------------------------------------
def test_diverging_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(capsys, tmp_path, finished):
    out = tmp_path / "out"
    code, err = cli(capsys, "run", *TINY, "--lr-prune", "1e30", "--out", str(out), "--name", "nan")
    assert_one_line_error(code, err, "the loss became", "at step", "Lower the learning rate")
    paths = RunPaths(out / "nan")
    state = json.loads(paths.state.read_text())
    assert state["pretrain_done"] and state["iterations_done"] == 0
    # The pretraining is untouched by --lr-prune: the checkpoint kept is the good one, bit for bit.
    kept, good = load_checkpoint(paths.pretrained)["model"], load_checkpoint(finished.pretrained)["model"]
    assert all(torch.equal(kept[k], good[k]) for k in good)
    assert not paths.masks_dir.exists(), "no decision was saved from a diverged recording"


def test_l1_that_empties_a_layer(capsys, tmp_path):
    out = tmp_path / "out"
    code, err = cli(capsys, "run", *TINY, "--l1-coeff", "1e3", "--out", str(out), "--name", "empty")
    assert_one_line_error(code, err, "every weight of", "fc1.weight", "--allow-empty-layers", "--l1-coeff")
    paths = RunPaths(out / "empty")
    assert paths.pretrained.exists() and json.loads(paths.state.read_text())["iterations_done"] == 0
    # Asked for explicitly, the same run goes through and reports what it did.
    code = main(["run", *TINY, "--l1-coeff", "1e3", "--allow-empty-layers", "--out", str(out)])
    assert code == 0
    summary = json.loads(next(out.glob("causal-*/summary.json")).read_text())
    assert summary["percent_pruned"] == 100.0


# -- a full disk ---------------------------------------------------------------------------------------------
def _enospc_on(monkeypatch, name: str, after: int) -> None:
    """os.replace fails with ENOSPC for the (after+1)-th write of files called ``name``."""
    real = os.replace
    seen = {"n": 0}

    def fake(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", fake)


def test_disk_full_keeps_previous_files_and_resumes(capsys, tmp_path, monkeypatch, finished):
    out = tmp_path / "out"
    _enospc_on(monkeypatch, "state.json", after=3)  # the 4th commit: pretraining done, nothing more
    # Pretraining in the run folder, so that every commit above is this run's state.json.
    code, err = cli(capsys, "run", *TINY, "--no-share-pretraining", "--out", str(out), "--name", "full")
    assert_one_line_error(code, err, "disk full while writing", "state.json", "previous version is kept")
    paths = RunPaths(out / "full")
    state = json.loads(paths.state.read_text())  # the previous state.json is intact and readable
    assert state["pretrain_done"] is True and state["iterations_done"] == 0
    assert not list(paths.root.rglob(".*.tmp")), "the temporary file of the failed write is removed"
    monkeypatch.undo()
    # Space freed: the same command resumes and ends where an undisturbed run ends.
    assert cli(capsys, "run", *TINY, "--no-share-pretraining", "--out", str(out), "--name", "full")[0] == 0
    assert paths.metrics.read_text() == finished.metrics.read_text()
    a, b = read_masks(paths.final_masks), read_masks(finished.final_masks)
    assert all(torch.equal(a[k], b[k]) for k in b)


def _writers():
    from causalprune.storage import save_checkpoint, save_tensors, write_json

    big = torch.arange(200_000, dtype=torch.float32)  # 800 KB: more than the small disk holds
    return {"torch.save": lambda p: save_checkpoint(p, {"w": big}),
            "safetensors": lambda p: save_tensors(p, {"w": big}),
            "json": lambda p: write_json(p, {"w": "x" * 800_000})}


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KB file system (tmpfs); needs the right to mount, else the test is skipped."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not shutil.which("mount") or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                                  capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the simulated tests cover the logic")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_real_full_disk_keeps_the_old_file(small_disk):
    from causalprune.storage import DiskFullError

    for name, write in _writers().items():
        target = small_disk / "result.bin"
        target.write_bytes(b"previous version")
        with pytest.raises(DiskFullError, match="disk full while writing .*previous version is kept"):
            write(target)
        assert target.read_bytes() == b"previous version", name
        assert [p.name for p in small_disk.iterdir()] == ["result.bin"], f"{name}: temporary file left"


def test_full_disk_reported_by_torch_as_runtime_error(tmp_path, monkeypatch):
    """torch.save reports ENOSPC as a RuntimeError ("unexpected pos ..."), safetensors as a
    SafetensorError; with no free space left such a failure is reported as a full disk, and with
    plenty of space it is passed on unchanged (a real bug must not pass for a full disk)."""
    import causalprune.storage as storage

    def torn_save(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(storage.torch, "save", torn_save)
    target = tmp_path / "ck.pt"
    target.write_bytes(b"old")
    free = {"bytes": 0}

    class _Stat:
        f_frsize = 4096

        @property
        def f_bavail(self):
            return free["bytes"] // 4096

    monkeypatch.setattr(storage.os, "statvfs", lambda p: _Stat())
    with pytest.raises(storage.DiskFullError, match="disk full"):
        storage.save_checkpoint(target, {"w": torch.ones(3)})
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    free["bytes"] = 50 * 1024**3
    with pytest.raises(RuntimeError, match="unexpected pos"):
        storage.save_checkpoint(target, {"w": torch.ones(3)})
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
