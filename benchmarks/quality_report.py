"""The per-task table of a `smt bench quality --out JSON` run: template, variants, peers, side by side.

    .venv/bin/python -m benchmarks.quality_report benchmarks/results/quality_fleet10.json \
        --command "smt bench quality --seeds 3 --peers DeepFM,DCN,LightGBM --out …"

Prints a markdown table and writes it beside the JSON (same name, ``.md``). For each task: test NE against the
training base rate (He et al. 2014) and against the test split's own base rate, mean ± std over seeds, and
calibration; which deep peer is best; whether the template beats it and LightGBM (flagged "within seed
noise" when the gap of the means is under the sum of the two standard deviations over seeds). The command that made the
JSON is printed above the table, so every figure comes with the one command that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path


def _mean_over_events(run: dict, key: str) -> float:
    values = [m.get(key) for m in run["test"].values()]
    return math.nan if any(v is None for v in values) else statistics.mean(values)


def summarize(groups: list[list[dict]]) -> dict[str, dict[str, dict]]:
    """task → row name → {ne_train, ne_train_sd, ne, calibration, seeds}."""
    table: dict[str, dict[str, dict]] = {}
    for runs in groups:
        if not runs:
            continue
        ne_train = [_mean_over_events(r, "ne_train") for r in runs]
        row = {
            "ne_train": statistics.mean(ne_train),
            "ne_train_sd": statistics.stdev(ne_train) if len(runs) > 1 else 0.0,
            "ne": statistics.mean(_mean_over_events(r, "ne") for r in runs),
            "calibration": statistics.mean(_mean_over_events(r, "calibration") for r in runs),
            "seeds": len(runs),
        }
        table.setdefault(runs[0]["package"], {})[runs[0]["variant"]] = row
    return table


def verdicts(rows: dict[str, dict]) -> tuple[str, str, str]:
    """(best deep peer, template vs it, template vs LightGBM) for one task."""
    template = rows.get("default")
    deep = {k: v["ne_train"] for k, v in rows.items() if k.startswith("peer DeepCTR") or "FuxiCTR" in k}
    best = min(deep, key=deep.get) if deep else "–"

    def versus(other: dict | None) -> str:
        """wins/loses by the mean over seeds; "within seed noise" when the gap is under the two seed stds."""
        if other is None or template is None or math.isnan(other["ne_train"]) or math.isnan(template["ne_train"]):
            return "–"
        gap = template["ne_train"] - other["ne_train"]
        change = 100 * gap / other["ne_train"]
        noise = ", within seed noise" if abs(gap) < template["ne_train_sd"] + other["ne_train_sd"] else ""
        return f"{'wins' if gap < 0 else 'loses'} ({change:+.2f}%{noise})"

    return best.removeprefix("peer "), versus(rows.get(best)), versus(rows.get("peer LightGBM"))


def versus_baseline(table: dict[str, dict[str, dict]]) -> tuple[list[list[str]], float | None]:
    """Rows (task, tuned baseline, template vs it) and the fleet-average relative change of test NE (train
    rate), template against each task's tuned per-model baseline: the paper's comparison (negative = better)."""
    rows, changes = [], []
    for task in sorted(table):
        template = table[task].get("default")
        baseline = next((k for k in table[task] if k.startswith("baseline")), None)
        if template is None or baseline is None:
            continue
        other = table[task][baseline]
        gap = template["ne_train"] - other["ne_train"]
        change = 100 * gap / other["ne_train"]
        changes.append(change)
        noise = ", within seed noise" if abs(gap) < template["ne_train_sd"] + other["ne_train_sd"] else ""
        rows.append(
            [task, baseline.removeprefix("baseline DNN "), f"{'wins' if gap < 0 else 'loses'} ({change:+.2f}%{noise})"]
        )
    return rows, (statistics.mean(changes) if changes else None)


def markdown(table: dict[str, dict[str, dict]], command: str) -> str:
    lines = [
        f"Reproduce: `{command}`" if command else "",
        "",
        "Test NE, mean ± std over seeds. **NE (train rate)** divides the logloss by the entropy of the training",
        "base rate (He et al. 2014); NE (test rate) by that of the test split's own base rate. Relative changes",
        "between rows of one task are the same under either. Calibration = mean prediction / mean label.",
        "",
        "| task | model | NE (train rate) | NE (test rate) | calibration | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for task in sorted(table):
        rows = table[task]
        order = sorted(rows, key=lambda k: (k != "default", k.startswith("peer"), k))
        for name in order:
            r = rows[name]
            lines.append(
                f"| {task} | {name} | {r['ne_train']:.4f} ± {r['ne_train_sd']:.4f} | {r['ne']:.4f} | "
                f"{r['calibration']:.3f} | {r['seeds']} |"
            )
    baseline_rows, fleet_change = versus_baseline(table)
    if baseline_rows:
        lines += [
            "",
            "Template defaults against the per-model baseline: a plain DNN (concat, plain MLP) at the template's",
            "dense FLOPs/example, its MLP shape and learning rate tuned on each task's own valid split (seed 0).",
            "",
            "| task | tuned baseline (shape, lr) | template vs baseline |",
            "|---|---|---|",
        ]
        lines += [f"| {' | '.join(row)} |" for row in baseline_rows]
        lines += [
            "",
            f"Fleet-average test NE (train rate), template vs tuned per-model baseline: **{fleet_change:+.2f}%** "
            f"(mean over {len(baseline_rows)} tasks of each task's relative change; negative is better).",
        ]
    if not any(name.startswith("peer ") for rows in table.values() for name in rows):
        return "\n".join(lines).lstrip("\n") + "\n"
    lines += ["", "| task | best deep peer | template vs best deep peer | template vs LightGBM |", "|---|---|---|---|"]
    wins = [0, 0, 0]
    for task in sorted(table):
        best, deep, lgbm = verdicts(table[task])
        wins[0] += deep.startswith("wins")
        wins[1] += lgbm.startswith("wins")
        wins[2] += 1
        lines.append(f"| {task} | {best} | {deep} | {lgbm} |")
    lightgbm = any("peer LightGBM" in rows for rows in table.values())
    tail = f", LightGBM on {wins[1]}." if lightgbm else " (LightGBM was not run)."
    lines += ["", f"Template defaults beat the best deep peer on {wins[0]} of {wins[2]} tasks{tail}"]
    return "\n".join(lines).lstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="JSON written by `smt bench quality --out`")
    parser.add_argument("--command", default="", help="the command that produced the JSON")
    args = parser.parse_args(argv)
    path = Path(args.results)
    text = markdown(summarize(json.loads(path.read_text())), args.command)
    path.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
