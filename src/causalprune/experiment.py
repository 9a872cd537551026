"""Algorithm 1 (paper §3, docs/method.md §3) as idempotent stages.

    pretrain N_pre epochs (Adam)                      -> checkpoints/pretrained.pt (the rewind point)
    for i in 1..N_iter:
        N_prune epochs of SGD, recording (causal)     \\
        decide (Lasso / magnitude / random)            > masks/iter_i.safetensors, checkpoints/iter_i.pt
        new mask = old mask * keep; rewind survivors  /
        and all biases to the pretrained weights
    post-train up to N_post epochs (Adam), early stopping on the training loss,
    best model by validation accuracy; the test set is evaluated once, at the end.

Rerunning the same command resumes after the last finished stage (``state.json``). Every epoch
draws its batches and dropout from a seed derived from its position, so on the CPU a resumed run
ends with the same masks and metrics as one that was never interrupted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from . import dist as ddp
from .config import Config
from .data import DATASETS, load_data_for
from .dist import agree
from .errors import ConfigError
from .masks import (
    Masks,
    apply_masks,
    check_not_empty,
    combine,
    current_masks,
    ones_masks,
    save_masks,
    sparsity,
)
from .methods import Decision, PruneContext, get_method
from .models import MODELS, build_model
from .paths import RunPaths
from .pretrain import check_stage, pretrain_key, stage_paths
from .record.recorder import Recorder
from .results.layers import write_layer_sparsity
from .results.summary import build_summary
from .runstate import RunState, prepare_run_dir
from .shared import FirstEpochs, SharedEpochs
from .storage import (
    copy_file,
    load_checkpoint,
    lock_folder,
    read_json,
    save_checkpoint,
    save_tensors,
    write_json,
)
from .structured.plan import structure_report
from .tblog import TensorBoardLog
from .train import (
    EarlyStopping,
    epoch_seed,
    evaluate,
    first_samples_loss,
    global_batch_loss,
    train_epoch,
)

__all__ = ["Experiment", "ExperimentCallback", "check_config"]

# Phase codes used to derive per-epoch seeds (never change them: they fix batch orders).
_PRE, _PRUNE, _LASSO, _POST, _DECIDE = 1, 2, 3, 4, 5


def check_config(cfg: Config) -> Config:
    """``cfg.validate()`` plus the names that only the registries know (model, data set)."""
    cfg.validate()
    for name, registry in (("model", MODELS), ("dataset", DATASETS)):
        if getattr(cfg, name) not in registry:
            raise ConfigError(f"unknown {name} {getattr(cfg, name)!r}; valid names: {', '.join(sorted(registry))}")
    return cfg


class ExperimentCallback:
    """Hooks into the stages of a run; override what you need. Callbacks observe a run, they do
    not change its result: every stage still resumes and replays exactly."""

    def epoch_callbacks(self, stage: str, index: str) -> list:
        """Extra step callbacks for one epoch: ``stage`` is pretrain, record or post; ``index`` the
        epoch (``"<iteration>.<epoch>"`` for record)."""
        return []

    def before_decide(self, iteration: int) -> None:
        """The pruning epochs of ``iteration`` are done; the method is about to decide."""

    def after_decide(self, iteration: int, masks: Masks) -> None:
        """Every rank agreed on the new ``masks`` of ``iteration``; they are about to be applied."""

    def after_run(self, summary: dict) -> None:
        """The run finished (also called when it had finished before)."""


class Experiment:
    """One run of Algorithm 1 for one method. ``Experiment(cfg).run()`` returns the summary."""

    def __init__(self, cfg: Config, *, overwrite: bool = False, log: Callable[[str], None] = print,
                 callbacks: list[ExperimentCallback] | None = None, shared: SharedEpochs | None = None):
        self.cfg = check_config(cfg)
        self.shared = shared  # iteration 1's epochs shared with the other runs of a command (shared.py)
        self.callbacks = list(callbacks or [])
        self.method = get_method(cfg.method)
        ddp.init_from_env(cfg.device)  # under torchrun: join the process group (no-op otherwise)
        self.log = log if ddp.is_main() else (lambda msg: None)
        self.device = ddp.local_device(ddp.resolve_device(cfg.device))
        self.tb = TensorBoardLog(cfg.tensorboard, RunPaths(cfg.run_dir()).tensorboard, cfg.n_prune)  # before any file
        self.paths, self._lock = prepare_run_dir(cfg, overwrite)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        cfg = self.cfg
        self.state = RunState(self.paths)
        self.state.log = self.tb.wrap(self.state.log)  # --tensorboard: every metrics row also as a scalar
        self.t0 = time.time()
        torch.manual_seed(cfg.seed)  # before building the model, so initialisation is seeded
        with ddp.main_first():  # rank 0 downloads/unpacks the data before the other ranks read it
            self.data = load_data_for(cfg, self.device)
        ddp.check_shared(self.paths.config)  # several nodes: --out must be shared (rewinds read it)
        self.model = build_model(cfg.model, self.data.spec).to(self.device)
        # Every model carries torch.nn.utils.prune masks from the start (all ones), so that the
        # state_dict has the same keys (weight_orig/weight_mask) at every stage.
        apply_masks(self.model, ones_masks(self.model))
        self.net = ddp.wrap_model(self.model, self.device)  # trained through (DDP under torchrun)

    def close(self) -> None:
        """Release the run folder's lock and the TensorBoard writer (``run()`` does this when it ends,
        however it ends)."""
        if getattr(self, "tb", None) is not None:
            self.tb.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "Experiment":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- small helpers --------------------------------------------------------------------------
    def _save(self, path: Path, **extra: Any) -> None:
        if ddp.is_main():
            save_checkpoint(path, {"model": self.model.state_dict(), **extra})

    def _load(self, path: Path) -> dict:
        # Deleting a finished stage's file does not make the run redo that stage: say what does.
        ck = load_checkpoint(path, self.device, advice="restore it, or pass --overwrite to recompute this run "
                                                       "from the start")
        self.model.load_state_dict(ck["model"])
        return ck

    def _replay(self, rows: list[tuple]) -> None:
        """Log metrics rows another run (or the shared stage) produced, as if this run had: the
        same CSV rows, and the same TensorBoard scalars under --tensorboard."""
        for phase, it, ep, step, name, value in rows:
            self.state.log(phase, int(it), int(ep), int(step), name, float(value))

    def _drop(self, epoch_file: Callable[[int], Path], upto: int) -> None:
        """Delete the epoch checkpoints 1..upto once state.json no longer points at them."""
        if ddp.is_main():
            for ep in range(1, upto + 1):
                epoch_file(ep).unlink(missing_ok=True)

    def _commit(self, **updates: Any) -> None:
        if ddp.is_main():
            self.state.commit(wall_seconds=self.state["wall_seconds"] + time.time() - self.t0, **updates)
        else:
            self.state.data.update(updates)  # DDP: the other ranks' view of the progress stays current
        self.t0 = time.time()
        ddp.barrier()

    def _steps_per_epoch(self) -> int:
        n = len(self.data.train)
        return min(n, self.cfg.max_steps_per_epoch) if self.cfg.max_steps_per_epoch else n

    def _epoch(self, opt: torch.optim.Optimizer, stage: str, index: str, seed: int, desc: str,
               callbacks: list = (), loss_fn=global_batch_loss):
        """One training epoch of any stage, with the experiment callbacks' step callbacks added."""
        extra = [cb for hook in self.callbacks for cb in hook.epoch_callbacks(stage, index)]
        return train_epoch(self.net, self.data.train, ddp.wrap_optimizer(opt, self.model), seed=seed,
                           loss_fn=loss_fn, callbacks=[*callbacks, *extra], max_steps=self.cfg.max_steps_per_epoch,
                           desc=desc)

    # -- stages -----------------------------------------------------------------------------------
    def run(self) -> dict:
        """Every stage not finished yet, then the summary; the folder's lock is released at the end."""
        if self._lock is None and ddp.is_main():  # run() again after it ended
            self._lock = lock_folder(self.paths.lock)
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> dict:
        cfg = self.cfg
        self.log(f"run folder: {self.paths.root}")
        if self.state["done"] and self.paths.summary.exists():
            self.log("already finished; nothing to do")
            summary = read_json(self.paths.summary)
        else:
            self.method.preflight(cfg, self.model)  # e.g. a missing --match-layers run fails before pretraining
            self.pretrain()
            for it in range(1, cfg.n_iter + 1):
                self.prune_iteration(it)
            self.post_train()
            summary = self.finish()
        for hook in self.callbacks:
            hook.after_run(summary)
        return summary

    def pretrain(self) -> None:
        """Algorithm 1 line 1, in the shared stage (pretrain.py) or, without sharing, in the run folder."""
        cfg = self.cfg
        if self.state["pretrain_done"]:
            return
        if not (cfg.share_pretraining and cfg.n_pre > 0 and not ddp.is_dist()):
            self._pretrain_epochs(self.paths, self.state, lambda st, **u: self._commit(**u))
            return
        stage = stage_paths(cfg, self.device)
        key = pretrain_key(cfg, self.device)
        with lock_folder(stage.lock, wait=True):  # another run computing this stage: wait, then reuse it
            check_stage(stage, key)
            write_json(stage.config, key)
            shared = RunState(stage)
            if shared["pretrain_done"]:
                self.log(f"pretrained weights: reusing {stage.root}")
            else:
                self.log(f"pretraining into the shared stage {stage.root}")
                self._pretrain_epochs(stage, shared, lambda st, **u: st.commit(**u))
            copy_file(stage.pretrained, self.paths.pretrained)
        self._replay([r for r in shared.rows if r[0] == "pre"])
        self._commit(pretrain_epochs_done=cfg.n_pre, pretrain_done=True,
                     pretrained_from=os.path.relpath(stage.root, self.paths.root))

    def _pretrain_epochs(self, paths: RunPaths, state: RunState, commit: Callable[..., None]) -> None:
        """N_pre epochs of Adam into ``paths`` (the run's folder or a shared stage), resuming after
        the last finished epoch; ``commit(state, **done)`` marks progress."""
        cfg = self.cfg
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr_train)
        done = state["pretrain_epochs_done"]
        if done:
            ck = self._load(paths.pre_epoch(done))
            opt.load_state_dict(ck["optim"])
        for ep in range(done + 1, cfg.n_pre + 1):
            res = self._epoch(opt, "pretrain", str(ep), epoch_seed(cfg.seed, _PRE, ep), f"pretrain {ep}/{cfg.n_pre}")
            state.log("pre", 0, ep, res.steps, "train_loss", res.loss)
            self.log(f"pretrain epoch {ep}/{cfg.n_pre}: train loss {res.loss:.4f}")
            self._save(paths.pre_epoch(ep), optim=opt.state_dict())
            commit(state, pretrain_epochs_done=ep)
            self._drop(paths.pre_epoch, ep - 1)
        self._save(paths.pretrained)
        commit(state, pretrain_done=True)
        self._drop(paths.pre_epoch, cfg.n_pre)

    def prune_iteration(self, it: int) -> None:
        """Algorithm 1, lines 3-7: SGD epochs, decide, multiply the masks, rewind."""
        cfg = self.cfg
        if self.state["iterations_done"] >= it:
            return
        self._load(self.paths.pretrained if it == 1 else self.paths.pruned(it - 1))
        old = current_masks(self.model)
        decision, (record_s, lasso_s), reused = self._decide(it, old)
        new = combine(old, decision.keep)
        check_not_empty(new, cfg.allow_empty_layers,
                        "use a smaller --l1-coeff" if cfg.method.startswith("causal") else "lower the pruning fraction")
        new = agree.agree_on_masks(new, tag=f"iter_{it:02d}")
        for hook in self.callbacks:
            hook.after_decide(it, new)
        # Rewind (Algorithm 1 line 7): survivors and all biases back to the pretrained weights.
        self._load(self.paths.pretrained)
        apply_masks(self.model, new)
        pct = sparsity(new)
        info = {"iteration": it, "percent_pruned": pct, "record_seconds": record_s, "lasso_seconds": lasso_s,
                "record_bytes": self.method.record_bytes, **({"shared_epochs": True} if reused else {})}
        self.state.log("prune", it, 0, 0, "percent_pruned", pct)
        self.log(f"iteration {it}/{cfg.n_iter}: {pct:.2f}% pruned"
                 + (f" (record {record_s:.1f}s, lasso {lasso_s:.1f}s)" if self.method.records else ""))
        if ddp.is_main():
            save_masks(self.paths.masks(it), new)
            write_layer_sparsity(self.paths, it, new)  # the pruning history in kilobytes, for publishing
            if decision.gammas:
                save_tensors(self.paths.gammas(it), decision.gammas)
            self.tb.iteration(it, new, decision.gammas)
        self._save(self.paths.pruned(it))
        self._commit(iterations_done=it, iterations=self.state["iterations"] + [info])

    def _decide(self, it: int, old: Masks) -> tuple[Decision, tuple[float, float], bool]:
        """The method's N_prune SGD epochs and its decision; (record, Lasso) seconds for a method
        that fits on what the epochs recorded; whether the epochs were another run's (shared.py)."""
        cfg, method = self.cfg, self.method
        ctx = PruneContext(cfg, it, self.model, old, self.device, lasso_seed=epoch_seed(cfg.seed, _LASSO, it),
                           decision_seed=epoch_seed(cfg.seed, _DECIDE, it), steps_per_epoch=self._steps_per_epoch(),
                           spill_path=self.paths.spill(it, ddp.rank()), log=self.log)
        if not method.trains:
            return method.decide(ctx), (0.0, 0.0), False
        t0 = time.time()
        share = self._share(it)
        reused = share.get(cfg, self.device, needs_recording=method.records) if share else None
        if reused is not None:  # iteration 1's epochs as another run of this command left them (shared.py)
            self.model.load_state_dict(reused.state)
            self._replay(reused.rows)
            ctx.recording = reused.recording
            self.log(f"iteration {it}: reusing the SGD epochs{' and recording' if method.records else ''} "
                     "of an earlier run with the same pretraining and protocol")
        else:
            rows = self._train_and_record(ctx, it)
        t1 = time.time()
        for hook in self.callbacks:
            hook.before_decide(it)
        decision = method.decide(ctx)
        lasso_s = time.time() - t1
        if reused is None:
            rec = ctx.recording
            if share is not None:
                kept = rec if self._shareable(rec) else None
                share.put(cfg, self.device, FirstEpochs(
                    {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}, rows, kept))
                rec = None if kept is not None else rec  # a kept recording is the share's to free
            if rec is not None:
                rec.free()
        seconds = (t1 - t0, lasso_s) if method.records else (0.0, 0.0)
        return decision, seconds, reused is not None

    def _train_and_record(self, ctx: PruneContext, it: int) -> list[tuple]:
        """Algorithm 1 line 4: N_prune epochs of SGD, with the method's step callbacks (its recorder);
        returns the metrics rows they logged."""
        cfg = self.cfg
        opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr_prune, momentum=cfg.momentum)
        callbacks = self.method.begin(ctx)
        loss_fn = first_samples_loss(cfg.loss_samples) if cfg.loss_samples else global_batch_loss
        first = len(self.state.rows)
        for ep in range(1, cfg.n_prune + 1):
            res = self._epoch(opt, "record", f"{it}.{ep}", epoch_seed(cfg.seed, _PRUNE, it, ep),
                              f"iter {it} sgd {ep}/{cfg.n_prune}", callbacks, loss_fn)
            self.state.log("prune", it, ep, res.steps, "train_loss", res.loss)
        return self.state.rows[first:]

    def _share(self, it: int) -> SharedEpochs | None:
        """The command's share of iteration 1's epochs, where it applies (shared.py)."""
        if it != 1 or self.shared is None or ddp.is_dist() or self.cfg.solver == "online":
            return None
        return self.shared

    @staticmethod
    def _shareable(rec: object | None) -> bool:
        return isinstance(rec, Recorder) and rec.spill is None

    def post_train(self) -> None:
        cfg = self.cfg
        if self.state["post_done"]:
            return
        start = self.paths.pruned(cfg.n_iter) if cfg.n_iter else self.paths.pretrained
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr_train)
        stopper = EarlyStopping(cfg.patience, cfg.min_delta)
        done = self.state["post_epochs_done"]
        if done:
            ck = self._load(self.paths.post_epoch(done))
            opt.load_state_dict(ck["optim"])
            stopper.load_state_dict(ck["stopper"])
            best_val = float(ck["best_val"])
        else:
            self._load(start)
            _, best_val = evaluate(self.model, self.data.val)
            self._save(self.paths.best, val_accuracy=best_val, epoch=0)
        stop = False
        for ep in range(done + 1, cfg.n_post + 1):
            res = self._epoch(opt, "post", str(ep), epoch_seed(cfg.seed, _POST, ep), f"post-train {ep}/{cfg.n_post}")
            val_loss, val_acc = evaluate(self.model, self.data.val)
            for name, v in (("train_loss", res.loss), ("val_loss", val_loss), ("val_accuracy", val_acc)):
                self.state.log("post", 0, ep, res.steps, name, v)
            self.log(f"post-train epoch {ep}: train loss {res.loss:.4f}, val acc {val_acc:.2f}%")
            if val_acc > best_val:
                best_val = val_acc
                self._save(self.paths.best, val_accuracy=val_acc, epoch=ep)
            stop = stopper.update(res.loss)
            self._save(self.paths.post_epoch(ep), optim=opt.state_dict(), stopper=stopper.state_dict(),
                       best_val=best_val)
            # post_done with the epoch: a kill right after an early stop must not train on.
            self._commit(post_epochs_done=ep, post_done=stop)
            self._drop(self.paths.post_epoch, ep - 1)
            if stop:
                self.log(f"early stop after epoch {ep}: no training-loss improvement for {cfg.patience} epochs")
                break
        self._commit(post_done=True)
        self._drop(self.paths.post_epoch, cfg.n_post)

    def finish(self) -> dict:
        ck = self._load(self.paths.best)
        test_loss, test_acc = evaluate(self.model, self.data.test)  # the only look at the test set
        masks = current_masks(self.model)
        self.state.log("final", 0, 0, 0, "test_accuracy", test_acc)
        self.state.log("final", 0, 0, 0, "test_loss", test_loss)
        summary = build_summary(self.cfg, self.model, masks, self.data.spec, test_acc,
                                float(ck.get("val_accuracy", float("nan"))), self.state["iterations"],
                                self.state["wall_seconds"] + time.time() - self.t0, self.device)
        structure = structure_report(self.model, masks, self.data.spec, self.device)  # removable channels
        summary["structure"] = structure["totals"]
        if ddp.is_main():
            write_json(self.paths.structure, structure)
            save_masks(self.paths.final_masks, masks)
            save_checkpoint(self.paths.final, {"model": self.model.state_dict(), "config": self.cfg.to_dict()})
            write_json(self.paths.summary, summary)
            self.tb.close()
        self._commit(done=True)
        self.log(f"test accuracy {test_acc:.2f}% at {summary['percent_pruned']:.2f}% pruned; "
                 f"results in {self.paths.root}")
        return summary
