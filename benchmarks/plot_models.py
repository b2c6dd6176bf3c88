"""Plot validation bits per character against training time for the runs of ``train_budget.py``.

    python benchmarks/plot_models.py docs/results/shakespeare-20min-*.json --out docs/models-shakespeare.png

``--table`` also prints the runs as a Markdown table (the tables of docs/MODELS.md).

Each run's validation points are its ``val_curve`` in the JSON (``train_budget.py`` copies it from
the run's Lightning CSV log), or else that log itself (``<run dir>/logs/metrics.csv``).
The time axis is the step divided by the run's quiet-machine steps/s, i.e. the minutes the same
steps take on this machine with nothing else running (the budget ``train_budget.py`` applies).
Needs matplotlib (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path


def run_dir(run: dict) -> Path:
    """The Hydra run folder named in the run's command (``hydra.run.dir=...``)."""
    match = re.search(r"hydra\.run\.dir=(\S+)", run["command"])
    if not match:
        raise SystemExit(f"{run['run']}: no hydra.run.dir in its command")
    return Path(match.group(1))


def validation_curve(folder: Path) -> list[tuple[int, float]]:
    """(step, val_bpc) pairs from a run's CSV log, in step order."""
    points = {}
    with open(folder / "logs" / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("val_bpc"):
                points[int(row["step"])] = float(row["val_bpc"])
    return sorted(points.items())


def markdown_table(runs: list[dict]) -> str:
    """One row per run: its overrides, size, quiet speed, steps and final validation score."""
    lines = ["| run | params | quiet steps/s | steps | val loss (nats/char) | val bpc |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for run in runs:
        lines.append(f"| `{run['run']}` | {run['params']:,} | {run['quiet_steps_per_second']:.3f} | {run['steps']} "
                     f"| {run['val_loss']:.4f} | {run['val_bpc']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="JSON files written by train_budget.py")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--title", default="Validation bits per character against training time")
    parser.add_argument("--table", action="store_true", help="also print the runs as a Markdown table")
    parser.add_argument("--ymax", type=float, help="top of the bits-per-character axis: points above it are off "
                        "the plot (e.g. a moving average of the weights scored before it has caught up)")
    args = parser.parse_args()
    runs = [(path, run) for path in args.results for run in json.loads(path.read_text())["runs"]]
    if args.table:
        print(markdown_table([run for _, run in runs]))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    many = len(runs) > 8  # then the legend goes below the axes, where it hides no curve
    figure, axes = plt.subplots(figsize=(8, 5 + 0.22 * len(runs) if many else 5), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ("-", "--", ":", "-.")  # past the colour cycle, the next lines are dashed, then dotted
    lowest = float("inf")
    for number, (path, run) in enumerate(runs):
        rate = run.get("quiet_steps_per_second")
        if not rate:
            raise SystemExit(f"{path}: run {run['run']} has no quiet steps/s to put time on the axis")
        curve = run.get("val_curve") or validation_curve(run_dir(run))
        minutes = [step / rate / 60 for step, _ in curve]
        lowest = min(lowest, *(bpc for _, bpc in curve))
        name = Path(run["export"]).name.removeprefix("bench-")  # e.g. tang-gru-20min
        label = f"{name} ({run['params'] / 1e6:.1f}M params): {run['val_bpc']:.3f}"
        axes.plot(minutes, [bpc for _, bpc in curve], marker="o", markersize=3, label=label,
                  color=colours[number % len(colours)],
                  linestyle=styles[number // len(colours) % len(styles)])
    axes.set_xlabel("training minutes on the quiet 2-core machine (steps / quiet steps per s)")
    axes.set_ylabel("validation bits per character")
    axes.set_title(args.title)
    axes.grid(alpha=0.3)
    if args.ymax is not None:  # the bottom follows the lowest point, not the range of those cut off
        axes.set_ylim(bottom=lowest - 0.05 * (args.ymax - lowest), top=args.ymax)
    if many:
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, fontsize="small")
    else:
        axes.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
