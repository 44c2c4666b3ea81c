"""One measured development cycle on the real fleet, the SMT way against the per-model way (DESIGN §7).

    .venv/bin/python -m benchmarks.cycle --techniques residual_blocks,emb_wd,periodic_numeric,dot,long_schedule \
        --out benchmarks/results/cycle_v042

1. **Per-model way**: every package evaluates every candidate on its own (`smt qualify T --packages <all>`, the
   same seeds, paired); a package takes a technique when its *own* runs pass the rule's per-package test
   (mean ΔNE ≤ −min_gain and its interval below zero), and the best such technique if several pass. Then each
   package searches combinations, as a model owner tuning their own model would: greedy forward selection over
   the techniques that passed on their own (add the one whose combination has the best valid ΔNE; keep it only
   if that beats the current choice by ≥ min_gain with the interval below zero; at most ``--max-combination``
   techniques). Answers are re-rendered at neutral capacity as always, so every combination is at the
   incumbent's dense FLOPs/example.
2. **SMT way**: each candidate qualified once on the representative subset (`smt qualify T`), accepted ones
   adopted fleet-wide in one `smt adopt` (skipped with ``--no-adopt``).
3. The three figures, both ways, on the same fleet and the same runs (an incumbent or candidate trained once
   serves both ways through the run cache, and each way is charged the machine time those runs took):
   fleet-average relative NE change at neutral capacity (valid decides, test reported), per-model iteration
   cost (commands, hand-edited lines, machine time per model), technique-model pairs adopted per machine-hour.
   Writes ``OUT.json``, ``OUT.md`` and the report (``OUT_report/index.html`` + a headless-Chromium screenshot).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from scaffold.ledger import ledger_path, read
from scaffold.report import chromium, screenshot, write_report

SMT = str(Path(sys.executable).parent / "smt")


def smt_json(*args: str, partial_ok: bool = False) -> dict:
    """``smt ARGS --json``'s answer. ``partial_ok``: exit 1 with an answer is one too (``smt adopt`` exits 1 when
    a package was not synced, and its record says which: the cycle reports those pairs as not adopted)."""
    proc = subprocess.run([SMT, *args, "--json"], capture_output=True, text=True)
    if proc.returncode != 0 and not (partial_ok and proc.returncode == 1 and proc.stdout.strip()):
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise SystemExit(f"smt {' '.join(args)} failed (exit {proc.returncode}): {lines[-1:]}")
    return json.loads(proc.stdout)


def _cli_value(value) -> str:
    """A value as ``smt qualify --set KEY=VALUE`` reads it back as the same type (JSON is YAML)."""
    return json.dumps(value)


def cost_seconds(record: dict) -> float:
    """What a qualification's trainings cost, whether they ran now or came from the run cache."""
    return record["machine_seconds"] + record.get("cached_seconds", 0.0)


def passing(records: dict[str, dict], package: str, min_gain: float) -> list[tuple[float, str, dict]]:
    """(valid ΔNE, technique, result) of the techniques that pass ``package``'s own test, best first."""
    out = []
    for technique, record in records.items():
        res = record["results"].get(package)
        if res and res["delta"] <= -min_gain and res["ci"][1] < 0:
            out.append((res["delta"], technique, res))
    return sorted(out)


def _choice(techniques: list[str], res: dict | None) -> dict:
    if not techniques:
        return {"technique": None, "techniques": [], "delta": 0.0, "delta_test": 0.0}
    return {"technique": "+".join(techniques), "techniques": techniques, **{k: res[k] for k in ("delta", "delta_test")}}


def per_model_choices(records: dict[str, dict], min_gain: float) -> dict[str, dict]:
    """package → the technique its own evidence picks (best valid ΔNE among those passing), or none."""
    packages = sorted({p for r in records.values() for p in r["results"]})
    choices = {}
    for package in packages:
        best = passing(records, package, min_gain)[:1]
        choices[package] = _choice([best[0][1]], best[0][2]) if best else _choice([], None)
    return choices


def merged_switch(records: dict[str, dict], techniques: list[str]) -> dict | None:
    """The answers and training options of ``techniques`` switched on together, or None when two of them set
    one key to different values (they cannot both be on)."""
    merged: dict[str, dict] = {"answers": {}, "training": {}}
    for technique in techniques:
        for part, values in records[technique]["candidate"].items():
            for key, value in values.items():
                if merged[part].get(key, value) != value:
                    return None
                merged[part][key] = value
    return merged


def per_model_search(
    records: dict[str, dict],
    min_gain: float,
    run_combination: Callable[[str, str, dict], dict],
    max_size: int = 3,
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Each package's best combination on its own valid split, by greedy forward selection.

    Starts from the best single technique that passes the package's own test; each round tries adding each
    other technique that passed on its own (``run_combination(package, name, switch)`` → its qualification
    record on that package alone, same seeds, so the incumbent runs are shared) and keeps the best addition
    only if its valid ΔNE beats the current choice's by ≥ ``min_gain`` with its interval below zero.
    Returns the choices (as :func:`per_model_choices`) and the combination records by ``package:name``.
    """
    choices, combinations = per_model_choices(records, min_gain), {}
    for package, choice in choices.items():
        pool = [t for _, t, _ in passing(records, package, min_gain) if t not in choice["techniques"]]
        while choice["techniques"] and pool and len(choice["techniques"]) < max_size:
            trials = []
            for technique in pool:
                together = choice["techniques"] + [technique]
                switch = merged_switch(records, together)
                if switch is None:
                    continue
                name = "+".join(together)
                record = run_combination(package, name, switch)
                combinations[f"{package}:{name}"] = record
                trials.append((record["results"][package]["delta"], technique, record["results"][package]))
            if not trials:
                break
            delta, technique, res = min(trials)
            if delta > choice["delta"] - min_gain or res["ci"][1] >= 0:
                break
            choice = _choice(choice["techniques"] + [technique], res)
            pool.remove(technique)
        choices[package] = choice
    return choices, combinations


def smt_way_deltas(records: dict[str, dict], accepted: list[str], states: dict[str, dict]) -> dict[str, dict]:
    """package → ΔNE the adopted defaults bring it (its own measured ΔNE for each adopted technique it follows;
    techniques adopted together are summed — they were qualified one at a time)."""
    out: dict[str, dict] = {}
    packages = sorted({p for r in records.values() for p in r["results"]})
    for package in packages:
        delta = delta_test = 0.0
        for technique in accepted:
            res = records[technique]["results"].get(package)
            if res and states.get(technique, {}).get(package) == "adopted":
                delta += res["delta"]
                delta_test += res["delta_test"]
        out[package] = {"delta": delta, "delta_test": delta_test}
    return out


def figures(
    per_model: dict,
    subset: dict,
    accepted: list[str],
    adoption: dict | None,
    n: int,
    choices: dict[str, dict] | None = None,
    combinations: dict[str, dict] | None = None,
) -> dict:
    """The three figures of DESIGN §7 from the per-model records, the subset records and the adoption.

    ``choices``/``combinations``: the per-model way's combination search (:func:`per_model_search`); without
    them each package takes its best single technique."""
    states = (adoption or {}).get("per_technique", {})
    combinations = combinations or {}
    if choices is None:
        choices = per_model_choices(per_model, subset[next(iter(subset))]["rule"]["min_gain"] if subset else 0.1)
    smt_deltas = smt_way_deltas(per_model, accepted, states)
    pm_seconds = sum(cost_seconds(r) for r in [*per_model.values(), *combinations.values()])
    smt_seconds = sum(cost_seconds(r) for r in subset.values()) + ((adoption or {}).get("machine_seconds") or 0.0)
    smt_pairs = sum(s == "adopted" for t in accepted for s in states.get(t, {}).values())
    pm_pairs = sum(len(c["techniques"]) for c in choices.values())
    k = len(per_model) + len(combinations) / n  # qualifications per model, combinations included
    mean = statistics.mean
    return {
        "fleet_ne": {
            "smt_valid": mean(d["delta"] for d in smt_deltas.values()),
            "smt_test": mean(d["delta_test"] for d in smt_deltas.values()),
            "per_model_valid": mean(c["delta"] for c in choices.values()),
            "per_model_test": mean(c["delta_test"] for c in choices.values()),
            "per_package": {p: {"smt": smt_deltas[p], "per_model": choices[p]} for p in choices},
        },
        "iteration_cost": {
            # SMT: k `smt qualify` + one `smt adopt` for the whole fleet; nothing edited by hand
            "smt_commands_per_model": (k + (1 if accepted else 0)) / n,
            "smt_hand_edited_lines_per_model": 0.0,
            "smt_machine_seconds_per_model": smt_seconds / n,
            # per model: one qualification per technique, then per taken technique one edit (a train.yaml line,
            # or `smt sync NAME --set` for an answer) and one commit
            "per_model_commands_per_model": k + 2 * pm_pairs / n,
            "per_model_hand_edited_lines_per_model": sum(
                len((merged_switch(per_model, c["techniques"]) or {"training": {}})["training"])
                for c in choices.values()
                if c["techniques"]
            )
            / n,
            "per_model_machine_seconds_per_model": pm_seconds / n,
        },
        "throughput": {
            "smt_pairs": smt_pairs,
            "smt_machine_hours": smt_seconds / 3600,
            "smt_pairs_per_machine_hour": smt_pairs / (smt_seconds / 3600) if smt_seconds else 0.0,
            "per_model_pairs": pm_pairs,
            "per_model_machine_hours": pm_seconds / 3600,
            "per_model_pairs_per_machine_hour": pm_pairs / (pm_seconds / 3600) if pm_seconds else 0.0,
        },
    }


def figures_table(f: dict) -> list[list[str]]:
    ne, cost, tp = f["fleet_ne"], f["iteration_cost"], f["throughput"]
    return [
        [
            "fleet-average ΔNE, valid (decides)",
            f"{ne['smt_valid']:+.3f}%",
            f"{ne['per_model_valid']:+.3f}%",
            "negative is better; neutral dense FLOPs/example",
        ],
        [
            "fleet-average ΔNE, test",
            f"{ne['smt_test']:+.3f}%",
            f"{ne['per_model_test']:+.3f}%",
            "held-out: what the choices are worth",
        ],
        [
            "commands per model",
            f"{cost['smt_commands_per_model']:.2f}",
            f"{cost['per_model_commands_per_model']:.2f}",
            "smt qualify / adopt vs qualify + edit + commit per model",
        ],
        [
            "hand-edited lines per model",
            f"{cost['smt_hand_edited_lines_per_model']:.1f}",
            f"{cost['per_model_hand_edited_lines_per_model']:.1f}",
            "train.yaml lines for training techniques",
        ],
        [
            "machine time per model",
            f"{cost['smt_machine_seconds_per_model'] / 60:.1f} min",
            f"{cost['per_model_machine_seconds_per_model'] / 60:.1f} min",
            "trainings + adoption sync",
        ],
        ["technique-model pairs adopted", str(tp["smt_pairs"]), str(tp["per_model_pairs"]), ""],
        [
            "pairs adopted per machine-hour",
            f"{tp['smt_pairs_per_machine_hour']:.1f}",
            f"{tp['per_model_pairs_per_machine_hour']:.1f}",
            f"{tp['smt_machine_hours']:.2f} h vs {tp['per_model_machine_hours']:.2f} h",
        ],
    ]


def markdown(result: dict) -> str:
    lines = [
        f"# Development cycle at {result['template_version']}: {len(result['techniques'])} candidates, "
        f"{len(result['packages'])} packages, {result['seeds']} seeds",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Representative subset (k={result['subset']['k']}): {', '.join(result['subset']['representatives'])}.",
        f"Rule: {result['rule_text']}",
        "",
        "| candidate | subset ΔNE valid [95% CI] | test | decision | per-model: packages passing their own test |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in result["techniques"]:
        s, pm = result["subset_records"][t], result["per_model_records"][t]
        a = s["aggregate"]
        passing = [p for p, r in pm["results"].items() if r["delta"] <= -s["rule"]["min_gain"] and r["ci"][1] < 0]
        lines.append(
            f"| {t} | {a['delta']:+.3f}% [{a['ci'][0]:+.3f}, {a['ci'][1]:+.3f}] | {a['delta_test']:+.3f}% | "
            f"{s['decision']} | {', '.join(passing) or '—'} |"
        )
    combinations = result.get("per_model_combinations") or {}
    if combinations:
        lines += [
            "",
            "## Per-model way: combinations tried (greedy forward selection on each package's own valid split)",
            "",
            "| package | combination | ΔNE valid [95% CI] | test |",
            "| --- | --- | --- | --- |",
        ]
        for key, record in combinations.items():
            package, name = key.split(":", 1)
            r = record["results"][package]
            lines.append(
                f"| {package} | {name} | {r['delta']:+.3f}% [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}] | "
                f"{r['delta_test']:+.3f}% |"
            )
    lines += [
        "",
        "## The three figures (DESIGN §7)",
        "",
        "| figure | SMT way | per-model way | note |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {' | '.join(row)} |" for row in result["figures_table"]]
    lines += [
        "",
        "## Per package: ΔNE (valid / test) each way",
        "",
        "| package | SMT way | per-model way (technique) |",
        "| --- | --- | --- |",
    ]
    for p, d in result["figures"]["fleet_ne"]["per_package"].items():
        pm = d["per_model"]
        lines.append(
            f"| {p} | {d['smt']['delta']:+.3f}% / {d['smt']['delta_test']:+.3f}% | "
            f"{pm['delta']:+.3f}% / {pm['delta_test']:+.3f}% ({pm['technique'] or 'none'}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--techniques", required=True, help="comma-separated candidates of techniques.yml")
    parser.add_argument("--data", default="build/data")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--k", type=int)
    parser.add_argument("--no-adopt", action="store_true", help="qualify only; leave the template as it is")
    parser.add_argument(
        "--max-combination", type=int, default=3, help="most techniques a package combines (per-model way)"
    )
    parser.add_argument("--out", required=True, help="path prefix: OUT.json, OUT.md, OUT_report/")
    args = parser.parse_args(argv)
    techniques = args.techniques.split(",")
    out = Path(args.out)
    started = time.perf_counter()
    common = ["--seeds", str(args.seeds), "--jobs", str(args.jobs), "--data", args.data]
    subset = smt_json("subset", "--data", args.data, *(["--k", str(args.k)] if args.k else []))
    packages = [d["package"] for d in subset["descriptors"]]
    scratch = Path("build") / f"{out.name}_per_model.jsonl"  # the per-model way decides nothing for the fleet
    per_model = {
        t: smt_json("qualify", t, "--packages", ",".join(packages), "--ledger", str(scratch), *common)
        for t in techniques
    }

    def run_combination(package: str, name: str, switch: dict) -> dict:
        settings = [f"{k}={_cli_value(v)}" for part in switch.values() for k, v in part.items()]
        sets = [arg for setting in settings for arg in ("--set", setting)]
        return smt_json("qualify", name, *sets, "--packages", package, "--ledger", str(scratch), *common)

    min_gain = next(iter(per_model.values()))["rule"]["min_gain"]
    choices, combinations = per_model_search(per_model, min_gain, run_combination, args.max_combination)
    subset_records = {t: smt_json("qualify", t, *(["--k", str(args.k)] if args.k else []), *common) for t in techniques}
    accepted = [t for t, r in subset_records.items() if r["decision"] == "accept"]
    adoption = smt_json("adopt", *accepted, partial_ok=True) if accepted and not args.no_adopt else None
    f = figures(per_model, subset_records, accepted, adoption, len(packages), choices, combinations)
    first = next(iter(subset_records.values()))
    result = {
        "command": "python -m benchmarks.cycle " + " ".join(argv if argv is not None else sys.argv[1:]),
        "template_version": first["template_version"],
        "techniques": techniques,
        "packages": packages,
        "seeds": args.seeds,
        "subset": subset["subset"],
        "rule_text": first["rule_text"],
        "subset_records": subset_records,
        "per_model_records": per_model,
        "per_model_combinations": combinations,
        "accepted": accepted,
        "adoption": adoption,
        "figures": f,
        "figures_table": figures_table(f),
        "wall_seconds": time.perf_counter() - started,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    report_dir = out.parent / f"{out.name}_report"
    page = write_report(read(ledger_path(Path.cwd())), report_dir, result, f"SMT cycle at {result['template_version']}")
    if chromium():
        screenshot(page, report_dir / "screenshot.png")
    else:
        print(f"no Chromium on this machine: {report_dir}/screenshot.png not taken (apt-get install chromium)")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
