"""Training loop: config → data → model (new or resumed) → optimizers → one loop (template-owned).

Dense parameters use AdamW, embedding tables (sparse gradients) SparseAdam; lr warms up linearly then
decays by cosine; dense gradients are clipped; validation NE drives best-checkpointing and early stopping.
Data order depends only on (seed, epoch), so a run resumed from ``last.pt`` reproduces the uninterrupted run.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint as ckpt
from .config import TrainConfig, config_from_dict
from .data import read_table
from .errors import ConfigError
from .loss import multi_event_bce
from .metrics import all_metrics
from .model import FeatureSizes, build_model
from .predict import predict, to_device
from .preprocess import Preprocessor
from .schema import FeatureSchema
from .spec import SPEC


class Interrupted(Exception):
    """Training stopped early on request (SIGINT or ``stop_after``); ``last.pt`` holds the state."""


@dataclass
class Progress:
    """Where a run is; saved in ``last.pt``."""

    step: int = 0
    best_ne: float = math.inf
    best_step: int = -1
    bad_evals: int = 0
    last_eval_step: int = -1
    samples: int = 0
    done: bool = False
    train_seconds: float = 0.0
    best_metrics: dict = field(default_factory=dict)


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Multiplier of the peak lr at ``step``: linear warmup, then cosine decay to ``min_lr_ratio``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, total_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    train_path: str | Path,
    valid_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    schema: FeatureSchema,
    resume: bool = False,
    stop_after: int | None = None,
    show_progress: bool | None = None,
) -> dict:
    """Train, write checkpoints to ``out_dir`` and return a summary with the best validation metrics."""
    schema.check_events(SPEC.events)
    out = Path(out_dir)
    last_path = out / ckpt.LAST
    if last_path.exists() and not resume:
        raise ConfigError(f"{out} already holds a training run; pass --resume to continue it or pick a new --out")
    resumed = ckpt.load(last_path) if resume else None
    if resumed is not None:
        ckpt.check_compatible(resumed["meta"], SPEC, schema, last_path)
        config = config_from_dict(resumed["meta"]["config"])
    train_table = read_table(train_path, schema)
    valid_table = read_table(valid_path, schema)
    if resumed is not None:
        pre = Preprocessor(schema, resumed["meta"]["preprocessor"])
    else:
        pre = Preprocessor.fit(train_table, schema)
    train_data, valid_data = pre.transform(train_table), pre.transform(valid_table)
    sparse_sizes, multi_sizes = pre.cardinalities()
    sizes = FeatureSizes(tuple(sparse_sizes), tuple(multi_sizes), schema.dense_width)
    meta = ckpt.make_meta(SPEC, schema, pre.state, sizes.to_dict(), config.to_dict())
    model = build_model(SPEC, sizes, config.seed)
    if hasattr(model, "init_base_rates"):
        model.init_base_rates(train_data.labels.mean(dim=0))
    run = _Run(config, meta, out, model)
    if resumed is not None:
        run.restore(resumed)
    return run.fit(train_data, valid_data, stop_after, _show(show_progress))


def _show(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


class _Run:
    """One training run's mutable state: model, optimizers, progress, log."""

    def __init__(self, config: TrainConfig, meta: dict, out: Path, model: torch.nn.Module):
        self.config, self.meta, self.out = config, meta, out
        self.device = _device(config.device)
        self.model = model.to(self.device)
        sparse = [p for n, p in model.named_parameters() if n.startswith("sparse_arch.")]
        dense = [p for n, p in model.named_parameters() if not n.startswith("sparse_arch.")]
        self.dense_params = dense
        self.dense_opt = torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay)
        self.sparse_opt = torch.optim.SparseAdam(sparse, lr=config.embedding_lr) if sparse else None
        self.progress = Progress()
        out.mkdir(parents=True, exist_ok=True)

    def restore(self, payload: dict) -> None:
        self.model.load_state_dict(payload["model"])
        self.dense_opt.load_state_dict(payload["dense_opt"])
        if self.sparse_opt is not None:
            self.sparse_opt.load_state_dict(payload["sparse_opt"])
        self.progress = Progress(**payload["progress"])
        torch.set_rng_state(payload["rng"])

    def fit(self, train_data, valid_data, stop_after: int | None, show: bool) -> dict:
        c, p = self.config, self.progress
        steps_per_epoch = math.ceil(len(train_data) / c.batch_size)
        total = c.epochs * steps_per_epoch
        bar = tqdm(total=total, initial=p.step, disable=not show, unit="step", dynamic_ncols=True)
        started = time.perf_counter() - p.train_seconds
        try:
            while p.step < total and not p.done:
                epoch, offset = divmod(p.step, steps_per_epoch)
                order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(c.seed * 7919 + epoch))
                index = order[offset * c.batch_size : (offset + 1) * c.batch_size]
                loss = self._step(to_device(train_data.rows(index), self.device), total)
                p.step += 1
                p.samples += len(index)
                p.train_seconds = time.perf_counter() - started
                bar.update(1)
                self._after_step(loss, epoch, steps_per_epoch, total, valid_data, bar)
                if stop_after is not None and p.step >= stop_after and p.step < total and not p.done:
                    raise Interrupted(f"stopped after step {p.step}")
        except (KeyboardInterrupt, Interrupted) as exc:
            self._save_last()
            raise Interrupted(f"interrupted at step {p.step}; resume with --resume ({self.out})") from exc
        finally:
            bar.close()
        if p.last_eval_step != p.step:
            self._evaluate(valid_data)
        p.done = True
        self._save_last()
        return self._summary()

    def _step(self, batch, total: int) -> float:
        factor = lr_factor(self.progress.step, total, self.config)
        for opt, base in ((self.dense_opt, self.config.lr), (self.sparse_opt, self.config.embedding_lr)):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = base * factor
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits = self.model(batch.sparse, batch.dense, batch.multi_hot)
        loss = multi_event_bce(logits.float(), batch.labels)
        self.dense_opt.zero_grad(set_to_none=True)
        if self.sparse_opt is not None:
            self.sparse_opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.dense_params, self.config.clip_norm)
        self.dense_opt.step()
        if self.sparse_opt is not None:
            self.sparse_opt.step()
        return float(loss.detach())

    def _after_step(self, loss, epoch, steps_per_epoch, total, valid_data, bar) -> None:
        c, p = self.config, self.progress
        if c.log_every and p.step % c.log_every == 0:
            lr = self.dense_opt.param_groups[0]["lr"]
            self._log({"step": p.step, "epoch": epoch, "loss": loss, "lr": lr, "seconds": p.train_seconds})
            bar.set_postfix(loss=f"{loss:.4f}")
        end_of_epoch = p.step % steps_per_epoch == 0
        if (c.eval_every and p.step % c.eval_every == 0) or (not c.eval_every and end_of_epoch):
            self._evaluate(valid_data)
            self._save_last()
        elif c.checkpoint_every and p.step % c.checkpoint_every == 0:
            self._save_last()
        if c.max_seconds and p.train_seconds >= c.max_seconds and p.step < total:
            if p.last_eval_step != p.step:
                self._evaluate(valid_data)
            p.done = True

    def _evaluate(self, valid_data) -> None:
        p = self.progress
        probs = predict(self.model, valid_data, device=str(self.device))
        metrics = all_metrics(SPEC.events, valid_data.labels.numpy(), probs)
        mean_ne = float(np.mean([m["ne"] for m in metrics.values()]))
        self._log({"step": p.step, "valid": metrics, "valid_mean_ne": mean_ne})
        p.last_eval_step = p.step
        if mean_ne < p.best_ne:
            p.best_ne, p.best_step, p.bad_evals, p.best_metrics = mean_ne, p.step, 0, metrics
            ckpt.save({"meta": self.meta, "model": self.model.state_dict(), "step": p.step}, self.out / ckpt.BEST)
        else:
            p.bad_evals += 1
            if self.config.patience and p.bad_evals >= self.config.patience:
                p.done = True

    def _save_last(self) -> None:
        payload = {
            "meta": self.meta,
            "model": self.model.state_dict(),
            "dense_opt": self.dense_opt.state_dict(),
            "sparse_opt": self.sparse_opt.state_dict() if self.sparse_opt is not None else {},
            "progress": self.progress.__dict__.copy(),
            "rng": torch.get_rng_state(),
        }
        ckpt.save(payload, self.out / ckpt.LAST)

    def _log(self, record: dict) -> None:
        with (self.out / "log.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def _summary(self) -> dict:
        p = self.progress
        summary = {
            "steps": p.step,
            "best_step": p.best_step,
            "train_seconds": round(p.train_seconds, 3),
            "samples_per_second": round(p.samples / max(p.train_seconds, 1e-9), 1),
            "valid": p.best_metrics,
        }
        (self.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but no CUDA device is available; use device=cpu")
    return torch.device(name)
