"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ..errors import SmtError
from ..template import TemplateRepo


def repo_of(args) -> TemplateRepo:
    return TemplateRepo.find(Path(args.repo) if args.repo else None)


def parse_data(items: list[str], flag: str = "--data") -> dict:
    """``KEY=VALUE`` pairs; values are YAML (``events=[click, buy]``, ``embedding_dim=32``)."""
    data = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SmtError(f"{flag} {item!r} must look like KEY=VALUE, e.g. {flag} embedding_dim=32")
        try:
            data[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise SmtError(f"{flag} {item!r}: the value is not valid YAML (quote it, e.g. '[1, 2]')") from None
    return data


def fleet_of(args) -> Path | None:
    return Path(args.fleet).resolve() if getattr(args, "fleet", None) else None


REF_HELP = "template version: release tag or commit (default: the latest release tag, else HEAD)"


def worker_count(text: str) -> int:
    """argparse type of ``--jobs``: a whole number of workers, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of workers, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
