"""Training loop: config → data → model (new or resumed) → optimizers → one loop (template-owned).

Dense parameters use AdamW, embedding tables (sparse gradients) RowSparseAdam; lr warms up linearly then
decays by cosine; dense gradients are clipped; validation NE drives best-checkpointing and early stopping.
Data order depends only on (seed, epoch), so a run resumed from ``last.pt`` reproduces the uninterrupted run.
Data are encoded once into tensors (cached on disk, see cache.py) and batched by gathering rows of them.
Under ``torchrun`` every process trains on its shard of each global batch (see distributed.py). A step may run
its forward and backward in micro-batches whose gradients add up to the batch's (``micro_batch_rows``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import atomic
from . import checkpoint as ckpt
from . import distributed as dist
from .averaging import WeightAverage, step_decay
from .builder import build_model, sized_spec
from .cache import encode_file
from .capacity import capacity
from .config import TrainConfig, config_from_dict
from .errors import CheckpointError, ConfigError, TrainingError
from .evaluate import evaluate
from .inputs import check_both_classes, check_same_inputs, file_identity
from .large_batch import batch_scaling
from .loss import multi_event_bce
from .metrics import all_metrics, cross_fitted_bias_probs, event_biases
from .model import FeatureSizes, RankingModel
from .optimizers import build_optimizers
from .predict import predict, to_device
from .preprocess import EncodedData, Preprocessor
from .schema import FeatureSchema
from .spec import SPEC
from .stream import InMemoryBatches, StreamedBatches
from .timing import PHASES, process_seconds


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
    best_weights: str = "weights"  # weights | average (weight_averaging): which of the two best.pt holds


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Multiplier of the peak lr at ``step``: linear warmup, then cosine decay to ``min_lr_ratio``.

    The warmup is ``warmup_steps`` as ``lr_scaling`` counts it at this batch size (see large_batch.py).
    """
    warmup = batch_scaling(config).warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
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
    test_path: str | Path | None = None,
) -> dict:
    """Train, write checkpoints to ``out_dir`` and return a summary with the best validation metrics.

    With ``test_path``, the summary also holds ``test``: ``evaluate(out_dir, test_path)`` of the finished run,
    scored in this process (a caller that wants both saves a process start and torch's import). The summary's
    ``capacity`` is what ``capacity --checkpoint out_dir`` reports of the run.
    """
    schema.check_events(SPEC.events)
    out = Path(out_dir)
    if test_path is not None and not Path(test_path).is_file():
        raise ConfigError(f"--test {test_path} is not a file: give the held-out split to score the kept model on")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; training writes a directory (checkpoints, log): pick a new path")
    blocked = atomic.in_the_way(out)
    if blocked is not None:  # refused before any data is read, not after the encoding
        raise ConfigError(f"--out {out}: {blocked}, not a folder; pick a new path")
    last_path = out / ckpt.LAST
    if resume and not last_path.exists():
        raise ConfigError(f"--resume: {out} holds no training run to continue; train without --resume first")
    if last_path.exists() and not resume:
        raise ConfigError(f"{out} already holds a training run; pass --resume to continue it or pick a new --out")
    inputs = {"train": file_identity(train_path), "valid": file_identity(valid_path)}
    resumed = ckpt.load(last_path) if resume else None
    if resumed is not None:
        ckpt.check_compatible(resumed["meta"], SPEC, schema, last_path)
        check_same_inputs(resumed["meta"].get("inputs"), inputs)
        config = config_from_dict(resumed["meta"]["config"])
    world = dist.init_world(_device(config.device).type)
    completed = False
    try:
        if not world.is_main:
            dist.barrier(world)  # rank 0 encodes (and caches) first; the others then load its cache entries
        fitted = Preprocessor(schema, resumed["meta"]["preprocessor"]) if resumed is not None else None
        if config.stream:
            from .data import ParquetColumns  # pyarrow: a run from the data cache never imports it

            pre = fitted
            if pre is None:
                with PHASES.phase("fit"):
                    pre = Preprocessor.fit(ParquetColumns(train_path, schema), schema)
            source = StreamedBatches(train_path, pre, config.batch_size, config.seed)
            rates, kept_negatives = source.label_rates(), torch.ones(len(schema.labels))
            train_rates = rates
        else:
            pre, train_data = encode_file(train_path, schema, fitted, use_cache=config.data_cache)
            train_rates = train_data.labels.mean(dim=0)  # before any negative downsampling
            train_data, kept_negatives = downsample_negatives(train_data, config.negative_sampling, config.seed)
            with PHASES.phase("stage"):
                staged = stage_on_device(train_data, _device(config.device, world.local_rank))
            source = InMemoryBatches(staged, config.batch_size, config.seed)
            rates = train_data.labels.mean(dim=0)
        _, valid_data = encode_file(valid_path, schema, pre, use_cache=config.data_cache)
        check_both_classes(valid_data, valid_path)
        if world.is_main:
            dist.barrier(world)
        sparse_sizes, multi_sizes = pre.cardinalities()
        sizes = FeatureSizes(tuple(sparse_sizes), tuple(multi_sizes), schema.dense_width)
        meta = ckpt.make_meta(SPEC, schema, pre.state_json, sizes.to_dict(), config.to_dict())
        meta["inputs"] = inputs
        meta["train_base_rates"] = {e: float(r) for e, r in zip(SPEC.events, train_rates.tolist())}
        with PHASES.phase("build"):
            meta["width_multiplier"] = sized_spec(SPEC, sizes).width_multiplier  # loading builds it as sized here
            model = build_model(SPEC, sizes, config.seed, meta["width_multiplier"])
            model.init_base_rates(rates.cpu())
            model.set_calibration(torch.log(kept_negatives))  # He et al. 2014 correction, applied in eval only
            served = capacity(model, sizes, schema) if world.is_main else None  # on the host, before any step
            run = _Run(config, meta, out, model, world)
            run.capacity = served
            if resumed is not None:
                run.restore(resumed)
        test = functools.partial(evaluate, out, test_path, schema) if test_path is not None else None
        progress = _progress_mode(show_progress) if world.is_main else "off"
        summary = run.fit(source, valid_data, stop_after, progress, test)
        completed = True
        return summary
    finally:
        dist.close_world(world, completed)


def _progress_mode(show_progress: bool | None) -> str:
    """The progress display: "bar" (asked for, or on a terminal), "lines" (plain lines on stderr), or "off"."""
    if show_progress is None:
        return "bar" if sys.stderr.isatty() else "lines"
    return "bar" if show_progress else "off"


PROGRESS_SECONDS = 10.0  # without a terminal, a progress line on stderr at most this often (and per evaluation)


class _Run:
    """One training run's mutable state: model, optimizers, progress, log."""

    def __init__(self, config: TrainConfig, meta: dict, out: Path, model: RankingModel, world=dist.SINGLE):
        self.config, self.meta, self.out, self.world = config, meta, out, world
        self.device = _device(config.device, world.local_rank)
        self.model = model.to(self.device)
        # nccl cannot all-reduce sparse gradients: under it the tables take dense gradients and Adam.
        sparse_gradients = world.backend != "nccl"
        optimizers = build_optimizers(model, config, sparse_gradients=sparse_gradients)
        self.dense_opt, self.sparse_opt = optimizers.dense, optimizers.embedding
        self.dense_params = optimizers.dense_params
        self.scaling = batch_scaling(config)
        self.average = None  # weight_averaging > 0: each validation also scores the average (see _evaluate)
        if config.weight_averaging:
            decay = step_decay(config.weight_averaging, config.batch_size, config.reference_batch_size)
            self.average = WeightAverage(self.model.parameters(), decay)
        self.forward = model
        # Row-sparse gradients are averaged over ranks by distributed.py, not by DDP.
        self.sparse_params = model.embedding_parameters() if world.enabled and sparse_gradients else []
        if world.enabled:
            self.forward = dist.data_parallel(model, world, self.sparse_params)
        if config.compile:
            compile_dense_stages(model)
        self.progress = Progress()
        self.test_metrics = None  # fit's ``test`` result (evaluate's dict), when it was given one
        self.capacity = None  # the model's parameters, embedding bytes and dense FLOPs/example (capacity.py)
        self.writer = ckpt.BackgroundWriter(background=config.async_checkpoints)
        self.saved_at = 0.0  # train seconds at the last resumable checkpoint
        self.progress_lines, self._line_at = False, 0.0  # plain progress lines on stderr (set by fit)
        if world.is_main:
            atomic.make_folder(out, f"cannot make the training folder --out {out}")

    def restore(self, payload: dict) -> None:
        """Continue from ``last.pt``: a finished run's holds no optimizer state, and needs none (``_save_last``)."""
        progress = Progress(**payload["progress"])
        if not progress.done and "dense_opt" not in payload:
            raise CheckpointError("last.pt has no optimizer state, yet its run is not done: retrain into a new --out")
        self.model.load_state_dict(payload["model"])
        if "dense_opt" in payload:
            self.dense_opt.load_state_dict(payload["dense_opt"])
            if self.sparse_opt is not None:
                self.sparse_opt.load_state_dict(payload["sparse_opt"])
        if self.average is not None and payload.get("average"):  # else it starts from the resumed weights
            self.average.load_state_dict(payload["average"])
        self.progress = progress
        self.saved_at = self.progress.train_seconds
        torch.set_rng_state(payload["rng"])

    def fit(self, source, valid_data, stop_after: int | None, progress: str, test=None) -> dict:
        """Train on batches from ``source`` (InMemoryBatches or StreamedBatches, see stream.py).

        ``progress``: "bar" (tqdm), "lines" (a plain line on stderr every PROGRESS_SECONDS and per evaluation)
        or "off". ``test``: called once the run is done and saved; what it returns is the summary's ``test``.
        """
        c, p = self.config, self.progress
        steps_per_epoch = math.ceil(len(source) / c.batch_size)
        total = c.epochs * steps_per_epoch
        self.progress_lines, self._line_at = progress == "lines", 0.0
        bar = tqdm(total=total, initial=p.step, disable=progress != "bar", unit="step", dynamic_ncols=True)
        started = time.perf_counter() - p.train_seconds
        try:
            with PHASES.phase("steps"):  # evaluations and checkpoints inside are charged to their own phases
                while p.step < total and not p.done:
                    epoch, offset = divmod(p.step, steps_per_epoch)
                    batch = source.batch(epoch, offset, lambda index: dist.shard(index, self.world))
                    rows = min(c.batch_size, len(source) - offset * c.batch_size)  # global rows of the step
                    loss = self._step(to_device(batch, self.device), total, rows)
                    p.step += 1
                    p.samples += rows
                    p.train_seconds = time.perf_counter() - started
                    bar.update(1)
                    self._after_step(loss, epoch, steps_per_epoch, total, valid_data, bar)
                    if stop_after is not None and p.step >= stop_after and p.step < total and not p.done:
                        raise Interrupted(f"stopped after step {p.step}")
        except (KeyboardInterrupt, Interrupted) as exc:
            self._save_last(wait=True)
            raise Interrupted(f"interrupted at step {p.step}; resume with --resume ({self.out})") from exc
        finally:
            bar.close()
        if p.last_eval_step != p.step:
            self._evaluate(valid_data)
        with PHASES.phase("checkpoint"):
            self.writer.wait()
        if not self.world.is_main:
            return {}
        if self.config.calibrate_bias and not p.done:
            with PHASES.phase("calibrate"):
                self._calibrate(valid_data)
        p.done = True
        self._save_last(wait=True)
        if test is not None:
            with PHASES.phase("test"):
                self.test_metrics = test()
        return self._summary()

    def _step(self, batch, total: int, rows: int) -> torch.Tensor:
        """One optimizer step on a batch of ``rows`` global rows; returns the loss as a 0-d tensor (read on the
        host only when logged: no sync)."""
        c, scaling = self.config, self.scaling
        factor = lr_factor(self.progress.step, total, c)
        pairs = ((self.dense_opt, c.lr * scaling.dense_lr), (self.sparse_opt, c.embedding_lr * scaling.embedding_lr))
        for opt, peak in pairs:
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = peak * factor
        if self.sparse_opt is not None:
            for group in self.sparse_opt.param_groups:
                group["batch_rows"] = rows  # CowClip's thresholds are per example (RowSparseAdam only)
        self.dense_opt.zero_grad(set_to_none=True)
        if self.sparse_opt is not None:
            self.sparse_opt.zero_grad(set_to_none=True)
        loss = self._backward(batch)
        dist.average_sparse_gradients(self.sparse_params, self.world)
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.dense_params, self.config.clip_norm)
        if self.average is not None:
            self.average.before_step()
        self.dense_opt.step()
        if self.sparse_opt is not None:
            self.sparse_opt.step()
        if self.average is not None:
            self.average.after_step()
        return loss

    def _backward(self, batch: EncodedData) -> torch.Tensor:
        """Forward and backward over ``batch`` in micro-batches (``micro_batch_rows``), each loss weighted by its
        share of the rows: the gradients add up to the whole batch's (the loss is a mean over rows), up to the
        order of float sums. Returns the batch's loss (0-d, detached). Under DDP only the last micro-batch
        all-reduces."""
        rows = len(batch)
        size = micro_batch_rows(self.config, rows, self.device)
        parts = [batch] if size >= rows else [batch.slice(start, start + size) for start in range(0, rows, size)]
        total = torch.zeros((), device=self.device)
        held = RowSparseGradients(self.model.embedding_parameters()) if len(parts) > 1 else None
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.forward, "no_sync") else self.forward.no_sync()
            with sync:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                    logits = self.forward(part.sparse, part.dense, part.multi_hot)
                loss = multi_event_bce(logits.float(), part.labels) + self.model.extra_loss(logits.float(), part.labels)
                if held is not None:
                    loss = loss * (len(part) / rows)
                loss.backward()
            if held is not None:
                held.take()
            total += loss.detach()
        if held is not None:
            held.restore()
        return total

    def _after_step(self, loss, epoch, steps_per_epoch, total, valid_data, bar) -> None:
        c, p = self.config, self.progress
        if p.step >= total:  # the final last.pt, written after this last evaluation, supersedes one still in flight
            self.writer.cancel(self.out / ckpt.LAST)
        if c.log_every and p.step % c.log_every == 0:
            lr = self.dense_opt.param_groups[0]["lr"]
            loss = float(loss)
            self._log({"step": p.step, "epoch": epoch, "loss": loss, "lr": lr, "seconds": p.train_seconds})
            bar.set_postfix(loss=f"{loss:.4f}")
        if self.progress_lines and p.train_seconds - self._line_at >= PROGRESS_SECONDS:
            self._line_at = p.train_seconds
            rate = p.samples / max(p.train_seconds, 1e-9)
            print(
                f"step {p.step}/{total} ({100 * p.step / total:.0f}%) epoch {epoch} loss {float(loss):.4f} "
                f"{rate:,.0f} samples/s",
                file=sys.stderr,
                flush=True,
            )
        end_of_epoch = p.step % steps_per_epoch == 0
        if (c.eval_every and p.step % c.eval_every == 0) or (not c.eval_every and end_of_epoch):
            self._evaluate(valid_data)
            if p.step < total and not p.done:  # else ``fit`` writes the final one
                self._save_last()
        elif (c.checkpoint_every and p.step % c.checkpoint_every == 0) or (
            c.checkpoint_seconds and p.train_seconds - self.saved_at >= c.checkpoint_seconds
        ):
            self._save_last()
        if c.max_seconds and dist.any_rank(p.train_seconds >= c.max_seconds, self.world) and p.step < total:
            self.writer.cancel(self.out / ckpt.LAST)  # the run stops here: its final last.pt follows
            if p.last_eval_step != p.step:
                self._evaluate(valid_data)
            p.done = True

    def _evaluate(self, valid_data) -> None:
        """Validate the weights (and, when averaging, their average: the better of the two counts and is kept as
        best.pt when it beats the best so far; early on, or on a short run, the average lags the weights)."""
        weights = self._validate(valid_data)
        if self.average is None:
            self._record({"weights": weights}, "weights")
            return
        with self.average.applied():
            results = {"weights": weights, "average": self._validate(valid_data)}
            if results["average"][1] < weights[1]:  # a tie keeps the weights
                self._record(results, "average")  # best.pt is written while the average is applied
                return
        self._record(results, "weights")

    def _record(self, results: dict[str, tuple[dict, float]], kept: str) -> None:
        """Log the validation of ``results[kept]`` and keep the model as it stands as best.pt when it is best."""
        p = self.progress
        metrics, mean_ne = results[kept]
        record = {"step": p.step, "valid": metrics, "valid_mean_ne": mean_ne}
        if self.average is not None:
            record.update({f"valid_mean_ne_{name}": ne for name, (_, ne) in results.items()}, kept=kept)
        self._log(record)
        if self.progress_lines:
            best = min(mean_ne, p.best_ne)
            print(f"step {p.step}: valid mean NE {mean_ne:.4f} (best {best:.4f})", file=sys.stderr, flush=True)
        p.last_eval_step = p.step
        if mean_ne < p.best_ne:
            p.best_ne, p.best_step, p.bad_evals, p.best_metrics = mean_ne, p.step, 0, metrics
            p.best_weights = kept
            if self.world.is_main:
                with PHASES.phase("checkpoint"):
                    best = {"meta": self.meta, "model": self.model.state_dict(), "step": p.step}
                    self.writer.save(best, self.out / ckpt.BEST)
        else:
            p.bad_evals += 1
            if self.config.patience and p.bad_evals >= self.config.patience:
                p.done = True

    def _validate(self, valid_data) -> tuple[dict, float]:
        """Metrics per event on ``valid_data`` of the model as it stands, and their mean NE."""
        with PHASES.phase("evaluate"):
            probs = self._predict_all(valid_data)
        if not np.isfinite(probs).all():
            raise TrainingError(
                f"training diverged by step {self.progress.step}: the model predicts non-finite values; "
                "lower lr / embedding_lr, or look for extreme values in the data"
            )
        with PHASES.phase("evaluate"):
            metrics = all_metrics(SPEC.events, valid_data.labels.numpy(), probs, self.meta["train_base_rates"])
        return metrics, float(np.mean([m["ne"] for m in metrics.values()]))

    def _predict_all(self, data: EncodedData) -> np.ndarray:
        """Probabilities (N, E) on ``data``; under torchrun each rank predicts its shard and all gather."""
        if not self.world.enabled:
            return predict(self.model, data, device=str(self.device))
        rows = dist.shard(torch.arange(len(data)), self.world)
        mine = torch.from_numpy(predict(self.model, data.rows(rows), device=str(self.device)))
        gather_device = self.device if self.world.backend == "nccl" else torch.device("cpu")
        return dist.gather(mine.to(gather_device), self.world).cpu().numpy()

    def _calibrate(self, valid_data) -> None:
        """Fit a per-event logit bias on the best weights so that mean prediction = mean label on valid; the
        checkpoint keeps that bias. The valid metrics reported are cross-fitted (``cross_fitted_bias_probs``):
        scored in sample, the bias would decide its own qualification on the rows it was fit on (flights_multi,
        3 seeds: valid NE -7.1%, test NE +10.5%)."""
        best = ckpt.load(self.out / ckpt.BEST)
        self.model.load_state_dict(best["model"])
        probs = predict(self.model, valid_data, device=str(self.device))
        logits = np.log(np.clip(probs, 1e-7, 1 - 1e-7) / np.clip(1 - probs, 1e-7, 1))
        labels = valid_data.labels.numpy()
        bias = torch.tensor(event_biases(logits, labels))
        self.model.shift_calibration(bias)
        metrics = all_metrics(
            SPEC.events, labels, cross_fitted_bias_probs(logits, labels), self.meta["train_base_rates"]
        )
        self.progress.best_metrics = metrics
        self._log({"step": self.progress.step, "calibrated_bias": bias.tolist(), "valid_cross_fitted": metrics})
        ckpt.save({"meta": self.meta, "model": self.model.state_dict(), "step": best["step"]}, self.out / ckpt.BEST)

    def _save_last(self, wait: bool = False) -> None:
        """Write ``last.pt`` (in the background unless ``wait``: see checkpoint.BackgroundWriter).

        Until the run is done it is the full state: ``--resume`` continues from it exactly. A done run has
        nothing left to resume (its config is fixed), so its last.pt keeps the final weights and the progress,
        not the optimizers' moments and the weight average: with large tables those are three quarters of the
        bytes, written while the process waits to exit (1M-row tables: 722 MB → 194 MB)."""
        self.saved_at = self.progress.train_seconds
        if not self.world.is_main:
            return
        payload = {"meta": self.meta, "model": self.model.state_dict()}
        if not self.progress.done:
            payload["dense_opt"] = self.dense_opt.state_dict()
            payload["sparse_opt"] = self.sparse_opt.state_dict() if self.sparse_opt is not None else {}
            payload["average"] = self.average.state_dict() if self.average is not None else {}
        payload.update(progress=self.progress.__dict__.copy(), rng=torch.get_rng_state())
        with PHASES.phase("checkpoint"):
            self.writer.save(payload, self.out / ckpt.LAST)
            if wait:
                self.writer.wait()

    def _log(self, record: dict) -> None:
        if not self.world.is_main:
            return
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
            **({"best_weights": p.best_weights} if self.average is not None else {}),
            **({"test": self.test_metrics} if self.test_metrics is not None else {}),
            **({"capacity": self.capacity} if self.capacity is not None else {}),
            "process_seconds": round(process_seconds(), 3),
            "phases": PHASES.report(),
        }
        atomic.write_text(self.out / "metrics.json", json.dumps(summary, indent=2) + "\n")
        return summary


CPU_MICRO_BATCH = 8192  # auto micro-batch rows on CPU (see micro_batch_rows)


def micro_batch_rows(config: TrainConfig, rows: int, device: torch.device) -> int:
    """Rows per forward/backward pass of a step of ``rows`` (local) rows: ``micro_batch_size``, or when that is
    0 (auto) at most ``CPU_MICRO_BATCH`` on CPU and the whole batch on CUDA.

    On CPU a large batch's activations outgrow the caches (131,072 rows × 512 floats is 268 MB a layer), so its
    elementwise ops go to memory and a sample costs more than in a small batch; micro-batches of 8,192 rows
    train 131,072-row batches about 1.9× as fast and 16,384-row ones about 1.25× (dcn_v2 on the Criteo-shaped
    set, template v0.7.23; ``benchmarks/results/micro_batch_cpu.md`` in the SMT repository).

    >>> from .config import config_from_dict
    >>> [micro_batch_rows(config_from_dict({}), n, torch.device("cpu")) for n in (512, 8192, 16384, 131072)]
    [512, 8192, 8192, 8192]
    >>> micro_batch_rows(config_from_dict({"micro_batch_size": 1000}), 4096, torch.device("cpu"))
    1000
    """
    size = config.micro_batch_size
    if size == 0:
        size = CPU_MICRO_BATCH if device.type == "cpu" else rows
    return max(1, min(size, rows))


class RowSparseGradients:
    """Row-sparse (COO) gradients of several backward passes, joined once.

    Autograd accumulates a second sparse gradient into ``param.grad`` by building a new tensor of the two, so k
    micro-batches copy about k²/2 micro-batches' rows (at 131,072 rows in 16 passes on 2 CPU cores, a third of
    the step). ``take`` moves each parameter's sparse gradient aside after a pass; ``restore`` sets the
    concatenation of them all, in pass order: the ids of one pass over the whole batch, in its order, each
    pass's values as its backward made them. Dense gradients (tables under nccl) are left to autograd, which
    adds them in place.

    >>> table = torch.nn.Embedding(5, 2, sparse=True)
    >>> held = RowSparseGradients([table.weight])
    >>> for ids in ([1, 2], [2, 4]):
    ...     table(torch.tensor(ids)).sum().backward()
    ...     held.take()
    >>> held.restore()
    >>> table.weight.grad._indices().tolist(), table.weight.grad._values().shape
    ([[1, 2, 2, 4]], torch.Size([4, 2]))
    """

    def __init__(self, params: list[torch.nn.Parameter]):
        self.params = list(params)
        self.parts: dict[torch.nn.Parameter, list[torch.Tensor]] = {}  # its passes' gradients, by parameter

    def take(self) -> None:
        """Move each parameter's sparse gradient of the last pass aside (``param.grad`` becomes None)."""
        for param in self.params:
            if param.grad is not None and param.grad.is_sparse:
                self.parts.setdefault(param, []).append(param.grad)
                param.grad = None

    def restore(self) -> None:
        """Set each parameter's gradient to its passes' gradients concatenated (uncoalesced, in pass order)."""
        for param, grads in self.parts.items():
            if len(grads) == 1:
                param.grad = grads[0]
                continue
            indices = torch.cat([g._indices() for g in grads], dim=1)  # (1, N)
            values = torch.cat([g._values() for g in grads])  # (N, D)
            param.grad = torch.sparse_coo_tensor(indices, values, param.shape, check_invariants=False)
        self.parts = {}


def downsample_negatives(data, rate: float, seed: int):
    """Keep every row with a positive label and a ``rate`` fraction of the all-negative rows (seeded).

    Returns the kept rows and, per event, the fraction of that event's negatives that were kept (E,): with
    several events a row negative for one event may be kept as a positive of another, so each event's
    correction is log(its own kept fraction); with one event it is log(rate) up to sampling noise.
    """
    events = data.labels.shape[1]
    if rate >= 1.0:
        return data, torch.ones(events)
    generator = torch.Generator().manual_seed(seed + 104729)
    keep = (data.labels.sum(dim=1) > 0) | (torch.rand(len(data), generator=generator) < rate)
    negatives = data.labels == 0  # (N, E)
    kept = (negatives & keep.unsqueeze(1)).sum(dim=0) / negatives.sum(dim=0).clamp(min=1)
    return data.rows(torch.nonzero(keep).squeeze(1)), kept.float()


def compile_dense_stages(model: RankingModel) -> None:
    """``torch.compile`` the dense stages in place (the embedding lookup stays eager: sparse gradients)."""
    for stage in (model.dense_arch, model.interaction, model.over_arch):
        if stage is not None:
            stage.compile(dynamic=False)


def stage_on_device(data: EncodedData, device: torch.device) -> EncodedData:
    """On CUDA, keep the whole encoded dataset on the GPU when it fits in half the free memory, else pin it."""
    if device.type != "cuda":
        return data
    size = data.sparse.nbytes + data.dense.nbytes + sum(m.nbytes for m in data.multi_hot) + data.labels.nbytes
    free, _ = torch.cuda.mem_get_info(device)
    if size < free // 2:
        return to_device(data, device)
    return EncodedData(
        data.sparse.pin_memory(),
        [m.pin_memory() for m in data.multi_hot],
        data.dense.pin_memory(),
        data.labels.pin_memory(),
    )


def _device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but no CUDA device is available; use device=cpu")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
