"""The command line: dry runs, tables and the one-line error paths."""

import json
import subprocess
import sys

import pytest

from causalprune.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dry_run_paper_preset_shows_table3(capsys):
    code, out, _ = _run(capsys, "run", "--preset", "paper", "--model", "lenet", "--dataset", "fashion-mnist",
                        "--method", "causal", "--dry-run")
    cfg = json.loads(out)
    assert code == 0
    assert (cfg["l1_coeff"], cfg["mag_prune_frac"]) == (1e-14, 0.1)
    assert (cfg["n_pre"], cfg["n_iter"], cfg["n_prune"], cfg["n_post"]) == (10, 10, 10, 200)
    assert (cfg["lr_train"], cfg["lr_prune"], cfg["batch_size"], cfg["patience"]) == (5e-4, 1e-3, 512, 5)



def test_forced_model_picks_its_own_table3_cell():
    """``table2`` forces each model in turn: the paper preset must use that model's cell, not the default's."""
    import argparse

    from causalprune.commands.options import resolve_config

    args = argparse.Namespace(preset="paper", dataset="cifar10")
    got = {m: (c.l1_coeff, c.mag_prune_frac) for m in ("lenet", "alexnet32", "resnet18-nobn")
           for c in [resolve_config(args, method="causal", model=m)]}
    assert got == {"lenet": (1e-14, 0.275), "alexnet32": (1e-16, 0.275), "resnet18-nobn": (1e-15, 0.215)}
    explicit = resolve_config(argparse.Namespace(preset="paper", dataset="cifar10", l1_coeff=3e-15), model="alexnet32")
    assert explicit.l1_coeff == 3e-15  # a flag still beats the preset's cell

def test_flags_override_preset_and_config_file(capsys, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("n_iter: 4\nl1_coeff: 1.0e-12\n")
    code, out, _ = _run(capsys, "run", "--preset", "paper", "--config", str(f), "--l1-coeff", "3e-13", "--dry-run")
    cfg = json.loads(out)
    assert code == 0 and cfg["n_iter"] == 4 and cfg["l1_coeff"] == 3e-13 and cfg["n_prune"] == 10


@pytest.mark.parametrize("argv,needle", [
    (["--model", "vgg99"], "valid names"),
    (["--dataset", "mnist9"], "valid names"),
    (["--n-pre", "-1"], "--n-pre must be >= 0"),
    (["--l1-coeff", "0"], "--l1-coeff must be a positive"),
    (["--l1-coeff=-1e-14"], "--l1-coeff must be a positive"),
    (["--method", "best"], "invalid choice"),
    (["--target-sparsity", "1.5"], "--target-sparsity"),
])
def test_bad_input_one_line_error(capsys, tmp_path, argv, needle):
    try:
        code, out, err = _run(capsys, "run", "--out", str(tmp_path), *argv)
    except SystemExit as exc:  # argparse's own checks (types, choices)
        code, err = exc.code, capsys.readouterr().err
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir()), "refused before any work started"


def test_cuda_without_gpu_is_a_clear_error(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = _run(capsys, "run", "--preset", "quick", "--device", "cuda", "--out", str(tmp_path))
    assert code == 2 and "no CUDA GPU" in err


def test_models_table_counts(capsys):
    code, out, _ = _run(capsys, "models", "--dataset", "cifar10")
    assert code == 0
    assert "657,080" in out and "656,500" in out  # LeNet on CIFAR-10 (method-facts §5)


def test_error_from_a_real_process_has_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "causalprune", "run", "--model", "nope", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("error: unknown model") and "Traceback" not in p.stderr


def test_closed_pipe_ends_quietly():
    """`causal-prune models | head -1`: the reader is gone before we write; no traceback, status 141."""
    p = subprocess.Popen([sys.executable, "-m", "causalprune", "models", "--dataset", "cifar10"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
