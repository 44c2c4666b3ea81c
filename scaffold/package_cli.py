"""One client for a package's own CLI (``python -m NAME …``): arguments built and results parsed in one place.

Every command runs in a subprocess with only the package's ``src/`` importable (the package stands alone), and
its JSON output becomes a typed result. The demo, the benchmarks and qualification all go through this client,
so a change of the package CLI's contract is one edit here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import statistics
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import runner
from .errors import SmtError

METRIC_KEYS = ("rows", "base_rate", "logloss", "ne", "auc", "calibration", "ne_train", "train_base_rate")
TRAIN_KEYS = ("steps", "best_step", "train_seconds", "samples_per_second")


@dataclass(frozen=True)
class EventMetrics:
    """Metrics of one event on one split; None where the split cannot define one (a single class).

    ``ne`` divides the logloss by the entropy of this split's own base rate; ``ne_train`` by that of the
    training base rate (He et al. 2014), None where the package (before template v0.4.0) or peer did not say.
    Between models on one split, relative NE changes are the same under either definition.
    """

    rows: int
    logloss: float | None
    ne: float | None
    auc: float | None
    calibration: float | None
    base_rate: float | None = None
    ne_train: float | None = None
    train_base_rate: float | None = None
    extra: Mapping[str, object] = field(default_factory=dict)  # keys a newer package reports beyond these

    @classmethod
    def from_dict(cls, d: Mapping) -> EventMetrics:
        if not isinstance(d, Mapping) or "ne" not in d:
            raise SmtError(f"package reported metrics without 'ne': {d!r}")
        extra = {k: v for k, v in d.items() if k not in METRIC_KEYS}
        return cls(
            int(d.get("rows") or 0),
            d.get("logloss"),
            d["ne"],
            d.get("auc"),
            d.get("calibration"),
            d.get("base_rate"),
            d.get("ne_train"),
            d.get("train_base_rate"),
            extra,
        )

    def to_dict(self) -> dict:
        own = {k: getattr(self, k) for k in METRIC_KEYS}
        return {**own, **self.extra}


def _events(d: Mapping) -> dict[str, EventMetrics]:
    return {event: EventMetrics.from_dict(m) for event, m in d.items()}


def events_to_dict(events: Mapping[str, EventMetrics]) -> dict[str, dict]:
    """The JSON form of metrics per event (what the package printed, keys beyond the known ones included)."""
    return {event: m.to_dict() for event, m in events.items()}


def mean_ne(events: Mapping[str, EventMetrics]) -> float:
    """The mean NE over events (the fleet's one-number summary of a split)."""
    values = [m.ne for m in events.values() if m.ne is not None]
    if not values:
        raise SmtError("no event has a defined NE on this split (one class only)")
    return statistics.mean(values)


@dataclass(frozen=True)
class TrainResult:
    """``train``'s summary: the best validation step's metrics and the run's cost."""

    steps: int
    best_step: int
    train_seconds: float
    samples_per_second: float
    valid: dict[str, EventMetrics]
    # Where the process's wall time went (template >= v0.5.0; empty / None from packages that predate it).
    process_seconds: float | None = None
    phases: dict[str, float] = field(default_factory=dict)
    test: Evaluation | None = None  # `train --test` (template >= v0.7.10): the kept model on a held-out file
    capacity: Capacity | None = None  # the run's model, as `capacity --checkpoint` says (template >= v0.7.11)

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainResult:
        steps, best_step, seconds, rate = (d[k] for k in TRAIN_KEYS)
        process = d.get("process_seconds")
        phases = {str(k): float(v) for k, v in (d.get("phases") or {}).items()}
        return cls(
            int(steps),
            int(best_step),
            float(seconds),
            float(rate),
            _events(d["valid"]),
            None if process is None else float(process),
            phases,
            Evaluation.from_dict(d["test"]) if d.get("test") is not None else None,
            Capacity.from_dict(d["capacity"]) if d.get("capacity") is not None else None,
        )

    def to_dict(self) -> dict:
        out = {**{k: getattr(self, k) for k in TRAIN_KEYS}, "valid": events_to_dict(self.valid)}
        if self.process_seconds is not None:
            out.update(process_seconds=self.process_seconds, phases=dict(self.phases))
        if self.test is not None:
            out["test"] = {"rows": self.test.rows, "events": events_to_dict(self.test.events)}
        if self.capacity is not None:
            out["capacity"] = self.capacity.to_dict()
        return out


@dataclass(frozen=True)
class Evaluation:
    """``evaluate --json``: metrics per event on one split."""

    rows: int
    events: dict[str, EventMetrics]

    @classmethod
    def from_dict(cls, d: Mapping) -> Evaluation:
        return cls(int(d["rows"]), _events(d["events"]))

    @property
    def mean_ne(self) -> float:
        return mean_ne(self.events)


@dataclass(frozen=True)
class Capacity:
    """``capacity --json``: parameters, embedding bytes, dense FLOPs per example."""

    parameters: int
    dense_parameters: int
    embedding_parameters: int
    embedding_bytes: int
    dense_flops_per_example: float

    @classmethod
    def from_dict(cls, d: Mapping) -> Capacity:
        return cls(
            int(d["parameters"]),
            int(d["dense_parameters"]),
            int(d["embedding_parameters"]),
            int(d["embedding_bytes"]),
            float(d["dense_flops_per_example"]),
        )

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ExportResult:
    """``export --json``: the artifact, its parity with eager, and serving latency per batch size."""

    artifact: Path
    parity_max_abs_diff: float
    latency_ms_p50: dict[str, float]
    rows_per_second: dict[str, float]
    raw: Mapping = field(default_factory=dict)  # everything the package reported (e.g. CUDA latency)

    @classmethod
    def from_dict(cls, d: Mapping) -> ExportResult:
        return cls(
            Path(d["artifact"]),
            float(d["parity_max_abs_diff"]),
            dict(d["latency_ms_p50"]),
            dict(d["rows_per_second"]),
            dict(d),
        )


def _arg(path: Path) -> str:
    """A path argument as the package's process reads it: absolute, since that process runs in the package's
    directory, not in the caller's."""
    return str(Path(path).absolute())


def _parse(kind, stdout: str, command: str):
    try:
        return kind.from_dict(json.loads(stdout))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SmtError(f"`{command}` printed output this smt cannot read ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class PackageCLI:
    """The CLI of the package at ``path`` (its import name is the directory name).

    ``features`` points every command at another ``features.yaml`` than the package's own (the benchmarks
    train one rendered package on several task layouts); ``threads`` sets its processes' ``OMP_NUM_THREADS``
    (default: inherited). ``capacities`` is a folder that keeps ``capacity`` results of package sources across
    processes (qualification uses the repository's ``.smt-cache/capacity``).
    """

    path: Path
    features: Path | None = None
    threads: int | None = None
    capacities: Path | None = None  # where ``capacity`` remembers measured sources across processes (or not)

    def _options(self) -> list[str]:
        return ["--features", _arg(self.features)] if self.features else []

    def _run(self, *args: str, show_stderr: bool = False) -> str:
        return runner.check_cli(
            self.path, *self._options(), *args, capture_stderr=not show_stderr, threads=self.threads
        )

    def command(self, *args: str) -> list[str]:
        """The full command line of ``args`` (for callers that measure the process themselves)."""
        return [sys.executable, "-m", self.path.name, *self._options(), *args]

    def synth(self, out: Path, rows: int, seed: int = 0) -> Path:
        self._run("synth", "--rows", str(rows), "--out", _arg(out), "--seed", str(seed))
        return out

    def train(
        self,
        train: Path,
        valid: Path,
        out: Path,
        overrides: Iterable[str] = (),
        quiet: bool = True,
        test: Path | None = None,
    ) -> TrainResult:
        """Train into ``out`` with ``key=value`` overrides of the package's training config; with ``test``, the
        package also scores the kept model on it (``train --test``: only packages that accept it, see
        ``train_and_test``)."""
        args = self.train_args(train, valid, out, overrides, quiet, test)
        return self.parse_train(self._run(*args, show_stderr=not quiet))

    def train_and_test(
        self, train: Path, valid: Path, test: Path, out: Path, overrides: Iterable[str] = ()
    ) -> tuple[TrainResult, Evaluation]:
        """Train, then the kept model's metrics on ``test``: in the training process where the package can
        (``train --test``, template >= v0.7.10: one torch import, not two), else through ``evaluate``."""
        if self.accepts("train", "--test"):
            trained = self.train(train, valid, out, overrides, test=test)
            if trained.test is None:
                raise SmtError(f"`train --test` of {self.path.name} printed no test metrics")
            return trained, trained.test
        return self.train(train, valid, out, overrides), self.evaluate(out, test)

    @staticmethod
    def train_args(
        train: Path, valid: Path, out: Path, overrides: Iterable[str] = (), quiet: bool = True, test: Path | None = None
    ) -> list:
        args = ["train", "--train", _arg(train), "--valid", _arg(valid), "--out", _arg(out)]
        return [*args, *(["--quiet"] if quiet else []), *(["--test", _arg(test)] if test else []), *overrides]

    @staticmethod
    def parse_train(stdout: str) -> TrainResult:
        return _parse(TrainResult, stdout, "train")

    def evaluate(self, checkpoint: Path, data: Path) -> Evaluation:
        stdout = self._run("evaluate", "--checkpoint", _arg(checkpoint), "--data", _arg(data), "--json")
        return _parse(Evaluation, stdout, "evaluate")

    def export(self, checkpoint: Path, out: Path) -> ExportResult:
        stdout = self._run("export", "--checkpoint", _arg(checkpoint), "--out", _arg(out), "--json")
        return _parse(ExportResult, stdout, "export")

    def run_capacity(self, trained: TrainResult, out: Path) -> Capacity:
        """The capacity of the run ``trained`` wrote to ``out``: from its summary (template >= v0.7.11), else
        ``capacity --checkpoint``."""
        return trained.capacity if trained.capacity is not None else self.capacity(out)

    def capacity(self, checkpoint: Path | None = None) -> Capacity:
        """Without a checkpoint, the model the package's code and config build: remembered per content of the
        package's ``src/`` (and ``features``) for this process, since one command asks again for a tree it
        already measured (an incumbent, a candidate that renders alike, a sizing check), and in
        ``capacities`` across processes (each measure is a process that imports torch and fits the FLOPs
        budget: about 2 s). Failures are not remembered."""
        key = None if checkpoint else self._source_key()
        if key in _CAPACITY:
            return _CAPACITY[key]
        entry = self._capacity_entry(key)
        capacity = _read_capacity(entry)
        if capacity is None:
            stdout = self._run("capacity", *(["--checkpoint", _arg(checkpoint)] if checkpoint else []), "--json")
            capacity = _parse(Capacity, stdout, "capacity")
            _write_capacity(entry, capacity)
        if key:
            _CAPACITY[key] = capacity
        return capacity

    def _capacity_entry(self, key: str | None) -> Path | None:
        if key is None or self.capacities is None:
            return None
        try:
            torch = importlib.metadata.version("torch")  # the package's process runs on this interpreter
        except importlib.metadata.PackageNotFoundError:
            torch = ""
        digest = hashlib.sha256(f"{key}\0{torch}".encode()).hexdigest()
        return self.capacities / f"{digest[:24]}.json"

    def accepts(self, command: str, option: str) -> bool:
        """Whether the package's ``command`` takes ``option`` (its ``--help``; remembered per content of
        ``src/``): how a client keeps working with packages of older template versions."""
        key = (f"{sys.executable}\0{runner.tree_hash(self.path / 'src')}", command)
        if key not in _HELP:
            _HELP[key] = self._run(command, "--help")
        return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", _HELP[key]) is not None

    def _source_key(self) -> str:
        features = self.features.read_bytes() if self.features and self.features.is_file() else b""
        return f"{sys.executable}\0{runner.tree_hash(self.path / 'src')}\0{hashlib.sha256(features).hexdigest()}"


def _read_capacity(entry: Path | None) -> Capacity | None:
    """The capacity ``entry`` holds; None when there is none or it cannot be read (it is measured again)."""
    if entry is None or not entry.is_file():
        return None
    try:
        return Capacity.from_dict(json.loads(entry.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_capacity(entry: Path | None, capacity: Capacity) -> None:
    """Keep ``capacity`` in ``entry`` (written aside and renamed: readers see the whole entry or none; each
    writer, process or thread, writes aside under its own name). An unwritable folder just keeps nothing."""
    if entry is None:
        return
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(capacity.to_dict()))
        os.replace(tmp, entry)
    except OSError:
        tmp.unlink(missing_ok=True)


_HELP: dict[tuple[str, str], str] = {}  # (interpreter and src/ content, command) → its --help text
_CAPACITY: dict[str, Capacity] = {}  # PackageCLI._source_key → Capacity (failures are not remembered)
