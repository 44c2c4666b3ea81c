"""The technique catalogue (``techniques.yml`` beside ``copier.yml``) and each technique's state in a package.

A technique is switched on by template answers (the package is re-rendered) and/or training options (its
``TrainConfig``). The catalogue is read and validated against the template it sits beside: every answer must
be a question of ``copier.yml`` (and one of its choices), every training option an option of ``TrainConfig``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .defaults import answer_default, config_path, training_defaults
from .errors import SmtError
from .fleet import Package
from .template import questions

CATALOGUE = "techniques.yml"
SLOTS = ("embedding", "dense", "interaction", "towers", "blocks", "head", "training")


@dataclass(frozen=True)
class Technique:
    id: str
    slot: str
    description: str
    reference: str
    answers: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    schema: dict = field(default_factory=dict)  # {section, option[, value]} of features.yaml: listed only

    @property
    def switchable(self) -> bool:
        """Whether smt can switch it on for a package (answers or training options, not a schema option)."""
        return bool(self.answers or self.training)

    @property
    def switch(self) -> str:
        """What switches it on, as one line (``interaction=dcn_v2``, ``embedding_weight_decay=0.001``)."""
        items = [f"{k}={_text(v)}" for k, v in {**self.answers, **self.training}.items()]
        if items:
            return ", ".join(items)
        value = f": {self.schema['value']}" if "value" in self.schema else ""
        return f"features.yaml {self.schema['section']}[].{self.schema['option']}{value}"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("id", "slot", "description", "reference", "answers", "training")} | (
            {"schema": self.schema} if self.schema else {}
        )


def _text(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()


def load_catalogue(repo_root: Path) -> dict[str, Technique]:
    """``techniques.yml`` of the repository at ``repo_root``, validated against its template."""
    path = Path(repo_root) / CATALOGUE
    if not path.is_file():
        raise SmtError(f"no technique catalogue at {path}; create {CATALOGUE} beside copier.yml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SmtError(f"{CATALOGUE} is not valid YAML ({exc.__class__.__name__}); fix its syntax") from None
    if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("techniques"), list):
        raise SmtError(f"{CATALOGUE} must hold 'version: 1' and a list 'techniques:'")
    known_questions = questions(repo_root)
    options = training_defaults(config_path(repo_root))
    catalogue: dict[str, Technique] = {}
    for i, entry in enumerate(raw["techniques"]):
        technique = _technique(entry, f"{CATALOGUE} technique #{i + 1}")
        if technique.id in catalogue:
            raise SmtError(f"{CATALOGUE}: technique {technique.id!r} is listed twice")
        _check_switch(technique, known_questions, options)
        catalogue[technique.id] = technique
    return catalogue


def _technique(entry, where: str) -> Technique:
    if not isinstance(entry, dict):
        raise SmtError(f"{where} must be a mapping with id, slot, switch (or schema), description, reference")
    unknown = set(entry) - {"id", "slot", "switch", "schema", "description", "reference"}
    if unknown:
        raise SmtError(f"{where}: unknown keys {sorted(unknown)}")
    tid = entry.get("id")
    if not isinstance(tid, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", tid):
        raise SmtError(f"{where}: id must be a lower snake-case name, got {tid!r}")
    where = f"{CATALOGUE} technique {tid!r}"
    if entry.get("slot") not in SLOTS:
        raise SmtError(f"{where}: slot must be one of {', '.join(SLOTS)}, got {entry.get('slot')!r}")
    for key in ("description", "reference"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise SmtError(f"{where}: needs a one-line {key}")
    on, schema = entry.get("switch") or {}, entry.get("schema") or {}
    if schema and (
        not isinstance(schema, dict)
        or schema.get("section") not in ("sparse", "multi_hot", "dense")
        or not isinstance(schema.get("option"), str)
        or set(schema) - {"section", "option", "value"}
    ):
        raise SmtError(f"{where}: schema takes section (sparse | multi_hot | dense), option and optional value")
    if not isinstance(on, dict) or set(on) - {"answers", "training"}:
        raise SmtError(f"{where}: 'switch' takes 'answers:' and/or 'training:' mappings")
    answers, training = on.get("answers") or {}, on.get("training") or {}
    if not isinstance(answers, dict) or not isinstance(training, dict):
        raise SmtError(f"{where}: 'switch.answers' and 'switch.training' must be mappings of key: value")
    if bool(answers or training) == bool(schema):
        raise SmtError(f"{where}: give exactly one of 'switch' (answers/training) or 'schema'")
    return Technique(
        tid, entry["slot"], entry["description"].strip(), entry["reference"].strip(), answers, training, schema
    )


def _check_switch(technique: Technique, known_questions: dict, options: dict, where: str = "") -> None:
    where = where or f"{CATALOGUE} technique {technique.id!r}"
    for key, value in technique.answers.items():
        if key not in known_questions:
            raise SmtError(f"{where}: {key} is not a question of copier.yml")
        choices = (known_questions[key] or {}).get("choices")
        if choices and value not in choices:
            raise SmtError(f"{where}: {key}={value!r} is not one of copier.yml's choices {choices}")
    for key, value in technique.training.items():
        if key not in options:
            raise SmtError(f"{where}: {key} is not an option of the template's TrainConfig")
        if not _same_kind(options[key], value):
            raise SmtError(f"{where}: {key} takes a {type(options[key]).__name__}, got {value!r}")


def _same_kind(default, value) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return type(default) is type(value)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return type(default) is type(value)


def ad_hoc(name: str, settings: dict, known_questions: dict, options: dict) -> Technique:
    """A candidate defined on the command line (``--set KEY=VALUE``): questions are answers, the rest training."""
    answers = {k: v for k, v in settings.items() if k in known_questions}
    training = {k: _coerce(v, options.get(k)) for k, v in settings.items() if k not in known_questions}
    unknown = sorted(set(training) - set(options))
    if unknown:
        raise SmtError(f"--set {', '.join(unknown)}: neither a template question nor a training option")
    technique = Technique(name, "training" if not answers else "ad hoc", "ad hoc (--set)", "", answers, training)
    _check_switch(technique, known_questions, options, f"--set of candidate {name!r}")
    return technique


def _coerce(value, default):
    """``1e-6`` is a string to YAML 1.1; a float option takes it as the number it means."""
    if isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def package_training(package: Package) -> dict:
    """The package's effective training defaults: its own config.py's TrainConfig, then its train.yaml."""
    values = training_defaults(package.path / "src" / package.name / "config.py")
    values.update(pinned_training(package))
    return values


def pinned_training(package: Package) -> dict:
    """The training options the package sets itself in its model-owned train.yaml."""
    own = package.path / "src" / package.name / "train.yaml"
    try:
        data = yaml.safe_load(own.read_text()) if own.is_file() else {}
    except yaml.YAMLError:
        raise SmtError(f"{own} is not valid YAML; fix its syntax") from None
    return data if isinstance(data, dict) else {}


def is_on(technique: Technique, package: Package) -> bool:
    """Whether every switch of ``technique`` has its 'on' value in ``package`` (answers and effective options)."""
    return _is_on(technique, _PackageFiles(package))


def enabled(catalogue: dict[str, Technique], package: Package) -> list[str]:
    """The ids of the catalogue's techniques that ``package`` has on, in catalogue order (``is_on``); the
    package's files are read once for the whole catalogue."""
    files = _PackageFiles(package)
    return [tid for tid, technique in catalogue.items() if _is_on(technique, files)]


class _PackageFiles:
    """What ``is_on`` reads of a package, each read at most once: its effective training options and its
    features.yaml."""

    def __init__(self, package: Package):
        self.package = package

    @functools.cached_property
    def training(self) -> dict:
        return package_training(self.package)

    @functools.cached_property
    def features(self) -> dict:
        path = self.package.path / "src" / self.package.name / "features.yaml"
        try:
            raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
        except yaml.YAMLError:
            raise SmtError(f"{path} is not valid YAML; fix its syntax") from None
        return raw if isinstance(raw, dict) else {}


def _is_on(technique: Technique, files: _PackageFiles) -> bool:
    if technique.schema:
        return _schema_on(technique.schema, files.features)
    answers = files.package.questions
    if any(answers.get(k) != v for k, v in technique.answers.items()):
        return False
    training = files.training if technique.training else {}
    return all(training.get(k) == v for k, v in technique.training.items())


def _schema_on(schema: dict, raw: dict) -> bool:
    features = raw.get(schema["section"]) or []
    option = schema["option"]
    for feature in features if isinstance(features, list) else []:
        if isinstance(feature, dict) and feature.get(option) not in (None, False, 0):
            if "value" not in schema or feature[option] == schema["value"]:
                return True
    return False


def is_default(technique: Technique, template_root: Path) -> bool:
    """Whether the template's current defaults switch the technique on."""
    if not technique.switchable:
        return False
    if any(answer_default(template_root, k) != v for k, v in technique.answers.items()):
        return False
    options = training_defaults(config_path(template_root))
    return all(options.get(k) == v for k, v in technique.training.items())
