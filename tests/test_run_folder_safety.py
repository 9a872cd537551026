"""No folder of the user's is ever deleted or written into, and a run folder's lock ends with the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from causalprune.cli import main
from causalprune.errors import CausalPruneError, ConfigError, EmptyLayerError
from causalprune.experiment import Experiment
from causalprune.paths import RunPaths

QUICK = ["--preset", "quick", "--device", "cpu", "--n-pre", "1", "--n-iter", "1", "--n-prune", "1", "--n-post", "1",
         "--max-steps-per-epoch", "3"]


def _user_folder(root: Path) -> dict[Path, str]:
    """A folder of the user's: files, a subfolder, and files that look like our temporaries."""
    files = {root / "notes.txt": "mine", root / "data" / "x.csv": "1,2", root / "data" / ".draft.abc.tmp": "keep",
             root / ".partial.tmp": "keep too"}
    for f, text in files.items():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return files


def _survived(files: dict[Path, str]) -> None:
    for f, text in files.items():
        assert f.is_file() and f.read_text() == text, f"{f} was deleted or changed"


@pytest.mark.parametrize("name", [".", "..", "../elsewhere", "sub/dir", "ABSOLUTE", " padded"])
def test_dangerous_names_are_refused_and_nothing_is_touched(tmp_path, capsys, name):
    out = tmp_path / "out"
    files = _user_folder(out)
    files.update(_user_folder(tmp_path / "elsewhere"))
    if name == "ABSOLUTE":
        name = str(tmp_path / "elsewhere")
    code = main(["run", *QUICK, "--out", str(out), "--name", name, "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --name"), err
    _survived(files)


def test_an_existing_folder_that_is_not_a_run_is_refused_even_with_overwrite(tmp_path, quick_cfg):
    files = _user_folder(Path(quick_cfg.out) / "mine")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="not this run's folder"):
            Experiment(quick_cfg.replace(name="mine"), overwrite=overwrite, log=lambda m: None)
        _survived(files)
        assert not (Path(quick_cfg.out) / "mine" / ".lock").exists(), "nothing is written into a foreign folder"


def test_overwrite_clears_only_what_a_run_writes(quick_cfg):
    cfg = quick_cfg.replace(name="run", n_iter=1, n_post=1, max_steps_per_epoch=3)
    Experiment(cfg, log=lambda m: None).run()
    root = Path(cfg.run_dir())
    extra = _user_folder(root / "my-notes")
    extra[root / "README.txt"] = "about this run"
    (root / "README.txt").write_text("about this run")
    Experiment(cfg, overwrite=True, log=lambda m: None).run()
    _survived(extra)
    assert RunPaths(root).summary.is_file()


def _other_process_can_lock(lock: Path) -> bool:
    code = ("import fcntl, sys\nfh = open(sys.argv[1], 'a+')\n"
            "try:\n    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(1)\n")
    return subprocess.run([sys.executable, "-c", code, str(lock)]).returncode == 0


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_the_lock_is_released_when_the_run_ends_or_fails(quick_cfg):
    cfg = quick_cfg.replace(n_iter=1, n_post=1, max_steps_per_epoch=3)
    before = _open_files()
    exp = Experiment(cfg, log=lambda m: None)
    assert not _other_process_can_lock(exp.paths.lock), "the lock is held while the run may write"
    exp.run()
    assert _other_process_can_lock(exp.paths.lock) and _open_files() == before
    # A run that fails (every weight pruned) releases its lock too.
    bad = cfg.replace(l1_coeff=1e3, name="fails")
    exp = Experiment(bad, log=lambda m: None)
    with pytest.raises(EmptyLayerError):
        exp.run()
    assert _other_process_can_lock(exp.paths.lock) and _open_files() == before
    # Many runs in one process (a notebook, a sweep) leak nothing.
    for seed in range(3):
        Experiment(cfg.replace(seed=seed, n_iter=0, n_post=0, n_pre=1), log=lambda m: None).run()
    assert _open_files() == before


def test_a_second_writer_is_still_refused_while_a_run_holds_the_folder(quick_cfg):
    with Experiment(quick_cfg, log=lambda m: None) as exp:
        with pytest.raises(CausalPruneError, match="in use by another running process"):
            subprocess_lock = [sys.executable, "-c",
                               "import sys; from causalprune.storage import lock_folder; lock_folder(sys.argv[1])",
                               str(exp.paths.lock)]
            res = subprocess.run(subprocess_lock, capture_output=True, text=True)
            raise CausalPruneError(res.stderr.strip().splitlines()[-1] if res.returncode else "taken")
    assert _other_process_can_lock(exp.paths.lock)
