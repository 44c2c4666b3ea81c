"""Typed training configuration (template-owned).

Precedence: defaults below < the package's ``train.yaml`` (model-owned) < ``key=value`` overrides on the
command line. Unknown keys and ill-typed values are errors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from .errors import ConfigError


def _option(default, help_text: str):
    """A training option: its default and the one line that ``train --help`` shows for it."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run."""

    batch_size: int = _option(512, "examples per step")
    epochs: int = _option(3, "passes over train")
    lr: float = _option(2e-3, "AdamW peak learning rate of the dense parameters")
    embedding_lr: float = _option(5e-2, "(row-sparse) Adam learning rate of the embedding tables")
    embedding_weight_decay: float = _option(
        0.0, "L2 on the embedding rows of each batch (coupled, as in Adam); try 1e-3"
    )
    embedding_decay_scaling: str = _option(
        "none",
        "none | frequency: frequency scales each row's L2 by its share of its own occurrences so far (DIN's "
        "mini-batch aware regularisation; frequent rows decay less per step)",
    )
    embedding_decay_multi_hot: bool = _option(
        True,
        "whether embedding_weight_decay also applies to multi-hot bag tables (false: only single-valued "
        "features' rows decay; a mean-pooled bag row gets 1/length of the data gradient but the whole L2)",
    )
    lr_scaling: str = _option(
        "auto",
        "auto | none | linear | sqrt | cowclip: how lrs, embedding L2 and warmup follow batch_size / "
        "reference_batch_size (see large_batch.py); auto = cowclip above the reference batch, else none",
    )
    reference_batch_size: int = _option(512, "the batch size at which lr and embedding_lr were tuned")
    critical_batch_size: int = _option(
        4096,
        "the lrs peak at this batch size and do not grow above it (L2 and warmup still follow the batch; see "
        "large_batch.py); 0 = no ceiling",
    )
    lr_above_critical: str = _option(
        "fall",
        "fall | flat: above critical_batch_size the lrs fall by 2 / (sqrt(c/b) + sqrt(b/c)) (the Adam 'surge' "
        "curve; 0.47x at 16x the critical batch) or stay at their critical-batch value (templates up to v0.7.4)",
    )
    embedding_clip: float = _option(
        0.0,
        "CowClip: clip each embedding row's gradient to its count x max(embedding_clip x |row|, "
        "embedding_clip_min) per example; 0 = off; try 1.0 with lr_scaling=cowclip",
    )
    embedding_clip_min: float = _option(1e-5, "CowClip's lower bound on the per-example clip threshold")
    embedding_beta1: float = _option(
        0.9,
        "Adam beta1 of the embedding tables: the decay of a row's gradient average, which moves only at the steps "
        "whose batch holds the row (lazy, like SparseAdam); 0 = no momentum",
    )
    embedding_beta2: float = _option(
        0.999, "Adam beta2 of the embedding tables: the decay of a row's squared-gradient average"
    )
    weight_decay: float = _option(1e-4, "AdamW decoupled weight decay (dense parameters only)")
    warmup_steps: int = _option(100, "linear warmup, then cosine decay")
    min_lr_ratio: float = _option(0.1, "final lr = lr * min_lr_ratio")
    clip_norm: float = _option(1.0, "max global grad norm of the dense parameters; 0 disables")
    micro_batch_size: int = _option(
        0,
        "rows per forward and backward pass within a step: the gradients of a batch's micro-batches add up to "
        "the batch's, then one optimizer step (less memory; faster on CPU at large batches, whose activations "
        "outgrow the caches); 0 = auto: at most 8192 on CPU, the whole batch on CUDA",
    )
    weight_averaging: float = _option(
        0.99,
        "decay of an exponential moving average of every weight (embedding rows kept lazily, see averaging.py), per "
        "step at reference_batch_size; each validation scores weights and average and keeps the better; 0 = off",
    )
    eval_every: int = _option(0, "validation every N steps; 0 = once per epoch")
    patience: int = _option(3, "stop after this many evaluations without a better validation NE")
    checkpoint_every: int = _option(
        0, "also write a resumable checkpoint every N steps; 0 = by time and at evaluations"
    )
    checkpoint_seconds: float = _option(300.0, "write a resumable checkpoint after this much training time; 0 = never")
    async_checkpoints: bool = _option(
        True, "write checkpoints on a background thread from a snapshot (training goes on); false = in the step"
    )
    log_every: int = _option(50, "JSONL training log every N steps")
    max_seconds: float = _option(0.0, "stop (with a checkpoint) after this much training time; 0 = no limit")
    negative_sampling: float = _option(
        1.0, "fraction of all-negative train rows kept; eval/export correct by log(rate)"
    )
    calibrate_bias: bool = _option(
        False, "after training, fit a per-event logit bias so that valid calibration is 1.0 (valid NE: cross-fitted)"
    )
    stream: bool = _option(False, "read the (Parquet) train file one row group at a time instead of all in memory")
    data_cache: bool = _option(
        True, "keep encoded tensors in the user cache ($SMT_DATA_CACHE or ~/.cache/smt-data; see cache.py)"
    )
    compile: bool = _option(False, "torch.compile the dense stages (needs a C++ compiler on CPU; first steps are slow)")
    seed: int = _option(0, "model init and data order")
    device: str = _option("auto", "auto | cpu | cuda; bf16 autocast on cuda")

    def to_dict(self) -> dict:
        return asdict(self)


def options_help() -> str:
    """Every training option with its default and meaning, for ``train --help`` (from the typed config)."""
    rows = [(f"{f.name}={f.default}", f.metadata["help"]) for f in fields(TrainConfig)]
    width = max(len(left) for left, _ in rows) + 2
    lines = [f"  {left:<{width}}{text}" for left, text in rows]
    return "training options (key=value after the flags; defaults < train.yaml < command line):\n" + "\n".join(lines)


def load_config(yaml_path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then ``yaml_path`` (None: none), then ``key=value`` overrides."""
    values: dict = {}
    if yaml_path is not None and not Path(yaml_path).is_file():  # a typo must not train on the defaults
        raise ConfigError(f"--config {yaml_path} is not a file; give a YAML of training options, or leave it out")
    if yaml_path is not None:
        try:
            loaded = yaml.safe_load(Path(yaml_path).read_text()) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{yaml_path} is not valid YAML; fix its syntax") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{yaml_path} must be a mapping of training options, e.g. 'lr: 0.001'")
        values.update(loaded)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. lr=0.001")
        try:
            values[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override '{item}': the value is not valid YAML; fix or quote it") from None
    return config_from_dict(values)


def config_from_dict(values: dict) -> TrainConfig:
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
    typed = {key: _coerce(key, value, known[key].type) for key, value in values.items()}
    config = TrainConfig(**typed)
    _check(config)
    return config


def _coerce(key: str, value: object, type_name: str) -> object:
    target = {"int": int, "float": float, "str": str, "bool": bool}[type_name]
    if target is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if target is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if (isinstance(value, bool) and target is not bool) or not isinstance(value, target):
        raise ConfigError(f"training option {key} must be {type_name}, got {value!r}")
    return value


def _check(c: TrainConfig) -> None:
    positive = {
        "batch_size": c.batch_size,
        "epochs": c.epochs,
        "lr": c.lr,
        "embedding_lr": c.embedding_lr,
        "reference_batch_size": c.reference_batch_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"training option {key} must be > 0, got {value}")
    non_negative = {
        "warmup_steps": c.warmup_steps,
        "clip_norm": c.clip_norm,
        "eval_every": c.eval_every,
        "checkpoint_every": c.checkpoint_every,
        "checkpoint_seconds": c.checkpoint_seconds,
        "max_seconds": c.max_seconds,
        "weight_decay": c.weight_decay,
        "embedding_weight_decay": c.embedding_weight_decay,
        "embedding_clip": c.embedding_clip,
        "embedding_clip_min": c.embedding_clip_min,
        "patience": c.patience,
        "critical_batch_size": c.critical_batch_size,
        "log_every": c.log_every,
        "micro_batch_size": c.micro_batch_size,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"training option {key} must be >= 0, got {value}")
    if not 0 < c.negative_sampling <= 1:
        raise ConfigError(f"training option negative_sampling must be in (0, 1], got {c.negative_sampling}")
    if not 0 <= c.weight_averaging < 1:
        raise ConfigError(f"training option weight_averaging must be in [0, 1) (0 = off), got {c.weight_averaging}")
    for key, beta in (("embedding_beta1", c.embedding_beta1), ("embedding_beta2", c.embedding_beta2)):
        if not 0 <= beta < 1:
            raise ConfigError(f"training option {key} must be in [0, 1), got {beta}")
    if not 0 <= c.min_lr_ratio <= 1:
        raise ConfigError(f"training option min_lr_ratio must be in [0, 1], got {c.min_lr_ratio}")
    if c.stream and c.negative_sampling < 1:
        raise ConfigError("training options stream and negative_sampling < 1 cannot be combined; drop one")
    choices = {
        "lr_scaling": (c.lr_scaling, ("auto", "none", "linear", "sqrt", "cowclip")),
        "lr_above_critical": (c.lr_above_critical, ("fall", "flat")),
        "embedding_decay_scaling": (c.embedding_decay_scaling, ("none", "frequency")),
        "device": (c.device, ("auto", "cpu", "cuda")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            names = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
            raise ConfigError(f"training option {key} must be {names}, got {value!r}")
