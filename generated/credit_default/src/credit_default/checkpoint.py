"""Checkpoints that carry everything needed to evaluate, export or resume (template-owned).

A training directory holds ``last.pt`` (full state for exact resume; once the run is done, its final weights
and progress only), ``best.pt`` (weights with the best validation NE), ``log.jsonl`` and ``metrics.json``. Both
``.pt`` files carry ``meta``: package name, model spec, feature schema and its fingerprint, fitted
preprocessing, table sizes, the training config and the width multiplier the model was sized to
(``width_multiplier``: loading builds that size without fitting again).
Writes are atomic (temp file + rename), so a killed run never leaves a half-written checkpoint.

The fitted preprocessing (vocabularies: millions of strings on large tables) is kept in ``meta`` as one JSON
string, made once per run: pickling it as lists took seconds per checkpoint. ``load`` returns it decoded,
and checkpoints that hold it as a dict (template before v0.6.2) load the same.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from .atomic import replacing
from .errors import CheckpointError
from .schema import FeatureSchema, model_fingerprint
from .spec import ModelSpec

LAST, BEST = "last.pt", "best.pt"


def make_meta(spec: ModelSpec, schema: FeatureSchema, preprocessor_json: str, sizes: dict, config: dict) -> dict:
    """The ``meta`` of every checkpoint of a run; ``preprocessor_json`` is ``Preprocessor.state_json``."""
    return {
        "format": 1,
        "package": spec.name,
        "spec": spec.to_dict(),
        "schema": schema.to_dict(),
        "schema_fingerprint": schema.fingerprint(),
        "preprocessor": preprocessor_json,  # decoded by ``load``
        "sizes": sizes,
        "config": config,
    }


def save(payload: dict, path: Path) -> None:
    with _replacing(path) as tmp:
        torch.save(payload, tmp)


def _replacing(path: Path):
    """``atomic.replacing`` for a checkpoint: a file where its folder goes is a CheckpointError."""
    return replacing(path, CheckpointError, f"cannot write checkpoint {path}")


class BackgroundWriter:
    """Checkpoint writes on one background thread, one at a time and in order, while training goes on.

    ``save`` waits for the previous write, copies every tensor of the payload (to host memory: the optimizer
    may change the originals at once; a GPU state is staged on the CPU) and hands the copy to the thread.
    ``wait`` blocks until every write is on disk and raises a failed write as CheckpointError. Each write is
    atomic (``save``), so a process killed mid-write leaves the previous checkpoint. ``background=False``
    writes in ``save`` itself.

    ``cancel(path)`` stops a write of ``path`` still in flight, within one chunk of ``CHUNK_BYTES``: its file
    stays as it was. A run calls it once its last step is done, since the final ``last.pt`` supersedes any
    earlier one; without it, a large-batch GPU run whose last epoch is shorter than writing the previous
    epoch's full state (1.3 GB with 4M-row tables) waited at its end for a file about to be replaced.
    """

    def __init__(self, background: bool = True):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint") if background else None
        self._pending: Future | None = None
        self._pending_path: Path | None = None
        self._stop = threading.Event()  # set by ``cancel``: the write in flight stops at its next chunk

    def save(self, payload: dict, path: Path) -> None:
        self.wait()
        if self._pool is None:
            _write(payload, path)
            return
        # ``meta`` does not change during a run: it is written as given (it may hold large vocabularies).
        copy = {key: value if key == "meta" else snapshot(value) for key, value in payload.items()}
        self._stop = threading.Event()
        self._pending, self._pending_path = self._pool.submit(_write, copy, path, self._stop), Path(path)

    def cancel(self, path: Path) -> None:
        """Stop the write of ``path`` in flight, if there is one (without waiting for it): ``path`` keeps the
        file it had before that write."""
        if self._pending is not None and self._pending_path == Path(path):
            self._stop.set()

    def wait(self) -> None:
        pending, self._pending, self._pending_path = self._pending, None, None
        if pending is not None:
            pending.result()


CHUNK_BYTES = 64 << 20  # a cancelled write stops within this many bytes


class WriteCancelled(Exception):
    """Raised inside a checkpoint write that ``BackgroundWriter.cancel`` stopped."""


class _StoppableFile:
    """A binary file that ``torch.save`` writes to (as it writes to any file object), in chunks of at most
    ``CHUNK_BYTES``, raising WriteCancelled at the first chunk after ``stop`` is set."""

    def __init__(self, fh, stop: threading.Event):
        self._fh, self._stop = fh, stop

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK_BYTES):
            if self._stop.is_set():
                raise WriteCancelled()
            self._fh.write(view[start : start + CHUNK_BYTES])
        return len(view)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def flush(self) -> None:
        self._fh.flush()


def snapshot(value):
    """A copy of ``value`` whose tensors are detached host copies (dicts, lists and tuples copied through)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: snapshot(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(item) for item in value)
    return value


def _write(payload: dict, path: Path, stop: threading.Event | None = None) -> None:
    """``save``, stopping (and leaving ``path`` as it was) once ``stop`` is set."""
    try:
        if stop is None:
            save(payload, path)
            return
        with _replacing(path) as tmp, open(tmp, "wb") as fh:
            torch.save(payload, _StoppableFile(fh, stop))
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoint {path} ({exc.strerror or exc}); free disk space or pick another --out"
        ) from None
    except Exception:
        if stop is not None and stop.is_set():
            return  # cancelled (torch may re-raise WriteCancelled as its own error): superseded, not failed
        raise


def load(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train first or point --checkpoint at a training dir")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or "meta" not in payload or "model" not in payload:
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of this template")
    meta = payload["meta"]
    if isinstance(meta, dict) and isinstance(meta.get("preprocessor"), str):
        try:
            meta["preprocessor"] = json.loads(meta["preprocessor"])
        except ValueError:
            raise CheckpointError(f"checkpoint {path} has corrupt preprocessing state; retrain") from None
    return payload


def load_for_inference(checkpoint: str | Path) -> dict:
    """The best weights of a training directory (or a ``.pt`` file), falling back to the last ones."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / BEST if (path / BEST).is_file() else path / LAST
    return load(path)


def spec_defaults() -> dict:
    """The defaults of answers added to ``ModelSpec`` over time: a checkpoint that predates one used it."""
    return {f.name: f.default for f in dataclasses.fields(ModelSpec) if f.default is not dataclasses.MISSING}


def check_compatible(meta: dict, spec: ModelSpec, schema: FeatureSchema, where: Path | str) -> None:
    """Refuse a checkpoint made by another package, other answers or another feature schema."""
    if meta.get("package") != spec.name:
        raise CheckpointError(f"checkpoint {where} was made by package '{meta.get('package')}', not '{spec.name}'")
    recorded = {**spec_defaults(), **(meta.get("spec") or {})}  # answers added later: their defaults
    if recorded != spec.to_dict():
        changed = sorted(k for k, v in spec.to_dict().items() if recorded.get(k) != v)
        raise CheckpointError(
            f"checkpoint {where} was made with other template answers ({', '.join(changed)}); retrain the model"
        )
    if model_fingerprint(meta.get("schema") or {}) != schema.fingerprint():
        raise CheckpointError(
            f"checkpoint {where} was trained with a different feature schema than the one given (--features, "
            "default: the package's features.yaml); retrain, or use the features.yaml it was trained with"
        )


def load_trained(checkpoint: str | Path, schema: FeatureSchema):
    """(model in eval mode, meta, fitted Preprocessor) of a training dir checked against this package."""
    from .builder import build_model
    from .model import FeatureSizes
    from .preprocess import Preprocessor
    from .spec import SPEC

    schema.check_events(SPEC.events)
    payload = load_for_inference(checkpoint)
    meta = payload["meta"]
    check_compatible(meta, SPEC, schema, checkpoint)
    model = build_model(SPEC, FeatureSizes.from_dict(meta["sizes"]), width_multiplier=meta.get("width_multiplier"))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError:
        raise CheckpointError(f"checkpoint {checkpoint} does not fit this model's layers; retrain") from None
    return model.eval(), meta, Preprocessor(schema, meta["preprocessor"])
