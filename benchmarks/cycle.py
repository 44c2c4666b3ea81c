"""One measured development cycle on the real fleet, the SMT way against the per-model way (DESIGN §7).

    .venv/bin/python -m benchmarks.cycle --techniques residual_blocks,emb_wd,periodic_numeric,dot,long_schedule \
        --out benchmarks/results/cycle_v042

1. **Per-model way**: every package evaluates every candidate on its own (`smt qualify T --packages <all>`, the
   same seeds, paired); a package takes a technique when its *own* runs pass the rule's per-package test
   (mean ΔNE ≤ −min_gain and its interval below zero), and the best such technique if several pass.
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
from pathlib import Path

from scaffold.ledger import ledger_path, read
from scaffold.report import chromium, screenshot, write_report

SMT = str(Path(sys.executable).parent / "smt")


def smt_json(*args: str) -> dict:
    proc = subprocess.run([SMT, *args, "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"smt {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def cost_seconds(record: dict) -> float:
    """What a qualification's trainings cost, whether they ran now or came from the run cache."""
    return record["machine_seconds"] + record.get("cached_seconds", 0.0)


def per_model_choices(records: dict[str, dict], min_gain: float) -> dict[str, dict]:
    """package → the technique its own evidence picks (best valid ΔNE among those passing), or none."""
    choices: dict[str, dict] = {}
    packages = sorted({p for r in records.values() for p in r["results"]})
    for package in packages:
        passing = []
        for technique, record in records.items():
            res = record["results"].get(package)
            if res and res["delta"] <= -min_gain and res["ci"][1] < 0:
                passing.append((res["delta"], technique, res))
        if passing:
            delta, technique, res = min(passing)
            choices[package] = {"technique": technique, "delta": delta, "delta_test": res["delta_test"]}
        else:
            choices[package] = {"technique": None, "delta": 0.0, "delta_test": 0.0}
    return choices


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


def figures(per_model: dict, subset: dict, accepted: list[str], adoption: dict | None, n: int) -> dict:
    """The three figures of DESIGN §7 from the per-model records, the subset records and the adoption."""
    states = (adoption or {}).get("per_technique", {})
    choices = per_model_choices(per_model, subset[next(iter(subset))]["rule"]["min_gain"] if subset else 0.1)
    smt_deltas = smt_way_deltas(per_model, accepted, states)
    pm_seconds = sum(cost_seconds(r) for r in per_model.values())
    smt_seconds = sum(cost_seconds(r) for r in subset.values()) + ((adoption or {}).get("machine_seconds") or 0.0)
    smt_pairs = sum(s == "adopted" for t in accepted for s in states.get(t, {}).values())
    pm_pairs = sum(c["technique"] is not None for c in choices.values())
    k = len(per_model)
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
                len(per_model[c["technique"]]["candidate"]["training"]) for c in choices.values() if c["technique"]
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
    subset_records = {t: smt_json("qualify", t, *(["--k", str(args.k)] if args.k else []), *common) for t in techniques}
    accepted = [t for t, r in subset_records.items() if r["decision"] == "accept"]
    adoption = smt_json("adopt", *accepted) if accepted and not args.no_adopt else None
    f = figures(per_model, subset_records, accepted, adoption, len(packages))
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
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
