"""The ledger: every qualification and adoption, append-only, one JSON object per line (``ledger.jsonl``).

One line per record keeps every change a one-line diff in review. Appends are safe with several writers: an
exclusive ``flock`` on a lock file beside the ledger serializes them, each record is one ``write`` of one line on
an ``O_APPEND`` descriptor, then ``fsync``. A writer killed in the middle of its write can leave only a partial
last line without its newline; readers skip it (and say so) and the next writer cuts it off before appending.
Every complete line is validated when read: a corrupt or hand-broken line is an error that names the line.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SmtError

LEDGER = "ledger.jsonl"
QUALIFICATION, ADOPTION = "qualification", "adoption"
REQUIRED = {
    QUALIFICATION: (
        "id",
        "date",
        "technique",
        "template_version",
        "candidate",
        "packages",
        "seeds",
        "rule",
        "results",
        "aggregate",
        "decision",
        "reasons",
        "machine_seconds",
    ),
    ADOPTION: ("id", "date", "technique", "qualification", "from_version", "to_version", "packages", "machine_seconds"),
}
DECISIONS = ("accept", "reject")
PAIR_STATES = ("adopted", "opted out", "already on", "not applicable", "not synced")


@dataclass
class Ledger:
    """The records of ``path`` in order, and whether a torn last line was skipped."""

    path: Path
    records: list[dict] = field(default_factory=list)
    torn_tail: bool = False

    def of_kind(self, kind: str) -> list[dict]:
        return [r for r in self.records if r["kind"] == kind]

    def find(self, record_id: str) -> dict | None:
        return next((r for r in self.records if r["id"] == record_id), None)

    def last_qualification(self, technique: str) -> dict | None:
        found = [r for r in self.of_kind(QUALIFICATION) if r["technique"] == technique]
        return found[-1] if found else None


def ledger_path(repo_root: Path) -> Path:
    return Path(repo_root) / LEDGER


def new_record(kind: str, **fields) -> dict:
    """A record of ``kind`` with a fresh id and the current UTC time (second precision)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {"kind": kind, "id": uuid.uuid4().hex[:12], "date": now, **fields}


def validate(record, where: str) -> dict:
    """``record`` if it is a well-formed ledger record, else an error that says where and what is wrong."""
    if not isinstance(record, dict) or record.get("kind") not in REQUIRED:
        raise SmtError(f"{where}: not a ledger record (kind must be one of {sorted(REQUIRED)})")
    missing = [k for k in REQUIRED[record["kind"]] if k not in record]
    if missing:
        raise SmtError(f"{where}: {record['kind']} record lacks {', '.join(missing)}")
    if record["kind"] == QUALIFICATION:
        if record["decision"] not in DECISIONS:
            raise SmtError(f"{where}: decision must be accept or reject, got {record['decision']!r}")
        if not isinstance(record["results"], dict) or set(record["results"]) != set(record["packages"]):
            raise SmtError(f"{where}: results must hold one entry per qualified package")
    else:
        states = record["packages"]
        if not isinstance(states, dict) or any(s not in PAIR_STATES for s in states.values()):
            raise SmtError(f"{where}: adoption packages must map package → one of {', '.join(PAIR_STATES)}")
    return record


def read(path: Path) -> Ledger:
    """Every record of the ledger at ``path`` (none when it does not exist yet), validated."""
    ledger = Ledger(Path(path))
    if not ledger.path.exists():
        return ledger
    data = ledger.path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1]:  # no final newline: a writer was killed mid-line; that record never completed
        ledger.torn_tail = True
    for number, raw in enumerate(lines[:-1], start=1):
        where = f"{ledger.path.name} line {number}"
        if not raw.strip():
            raise SmtError(f"{where} is empty; the ledger is append-only, restore it with `git checkout {LEDGER}`")
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SmtError(
                f"{where} is not valid JSON; the ledger is append-only, restore it with `git checkout {LEDGER}`"
            ) from None
        ledger.records.append(validate(record, where))
    ids = [r["id"] for r in ledger.records]
    if len(ids) != len(set(ids)):
        raise SmtError(f"{ledger.path.name} holds two records with one id; restore it with `git checkout {LEDGER}`")
    return ledger


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock (also when the process dies)


def append(path: Path, record: dict) -> dict:
    """Append one validated record as one line; safe with concurrent writers and after a killed one."""
    path = Path(path)
    validate(record, "new record")
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
                if not tail.endswith(b"\n"):  # a killed writer's partial line: it never was a record
                    os.ftruncate(fd, size - (len(tail) - (tail.rfind(b"\n") + 1)))
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    return record


def pair_matrix(records: list[dict]) -> dict[str, dict[str, dict]]:
    """technique → package → the latest state of that pair (later records win).

    An adoption's cell shows the ΔNE its own qualification(s) measured of that package (``record["qualification"]``),
    and none where they did not measure it (a package skipped as not applicable, or one the subset stood for): an
    older qualification's figure, rejected at another template version, is not the evidence the adoption rests on.
    """
    cells: dict[str, dict[str, dict]] = {}
    qualifications: dict[str, dict] = {}
    for r in records:
        if r["kind"] == QUALIFICATION:
            qualifications[r["id"]] = r
            row = cells.setdefault(r["technique"], {})
            measured = _measured(r)
            for name, res in measured.items():
                row[name] = {
                    "state": "qualified" if r["decision"] == "accept" else "rejected",
                    "template_version": r["template_version"],
                    "delta": res["delta"],
                    "ci": res["ci"],
                    "delta_test": res["delta_test"],
                    "date": r["date"],
                    "machine_seconds": round(r["machine_seconds"] / max(1, len(measured)), 1),
                    "record": r["id"],
                }
        else:
            basis = r["qualification"] if isinstance(r["qualification"], list) else [r["qualification"]]
            for technique, states in (r.get("per_technique") or {r["technique"]: r["packages"]}).items():
                row = cells.setdefault(technique, {})
                evidence = [
                    qualifications[q]
                    for q in basis
                    if q in qualifications and qualifications[q]["technique"] == technique
                ]
                for name, state in states.items():
                    measured = next((_measured(q)[name] for q in reversed(evidence) if name in _measured(q)), {})
                    row[name] = {
                        "state": state,
                        "template_version": r["to_version"],
                        "delta": measured.get("delta"),
                        "ci": measured.get("ci"),
                        "delta_test": measured.get("delta_test"),
                        "date": r["date"],
                        "machine_seconds": round(
                            r["machine_seconds"] / max(1, len(r["packages"])), 1
                        ),  # sync, per package
                        "record": r["id"],
                    }
    return cells


def _measured(qualification: dict) -> dict[str, dict]:
    """package → its result in ``qualification``: the subset's, and the held-out (guard) packages' too."""
    return {**qualification["results"], **(qualification.get("guard") or {})}
