"""The summary table of a Hydra sweep: one row per job, written to the sweep folder.

:class:`SweepSummary` is a Hydra callback (``hydra.callbacks`` in ``conf/train.yaml``).  When a job
of a multirun ends, in whatever process or machine ran it, it records the job in
``<job folder>/job.json`` (status, overrides, error) and rewrites ``summary.md`` and
``summary.csv`` in the sweep folder from all job folders so far; when the sweep ends, the launching
process rewrites them once more.  A failed job is a ``failed`` row with its error; a job still
running (or killed) has ``status`` ``running``.  The ``config`` column shows the overrides that
differ between the sweep's jobs.  Metrics come from ``result.json``, which ``textgen.train``
writes into a run's folder after exporting it.

``python -m textgen.training.sweep <sweep folder>`` rebuilds and prints the table (e.g. after a SLURM
sweep whose launcher was stopped).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from textgen.atomic import atomic_write_text

COLUMNS = ("job", "status", "config", "val_bpc", "steps", "train_seconds", "export", "error")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _job_overrides(job_dir: Path) -> list[str]:
    from omegaconf import OmegaConf

    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        return [str(o) for o in OmegaConf.load(path)]
    except (OSError, ValueError):
        return []


def collect_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job folder of ``sweep_dir`` (a folder with ``job.json`` or ``.hydra/``)."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for job_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        job, result = _read_json(job_dir / "job.json"), _read_json(job_dir / "result.json")
        if not job and not (job_dir / ".hydra").is_dir():
            continue
        overrides = job.get("overrides") or _job_overrides(job_dir)
        number = job.get("job", job_dir.name.split("-", 1)[0])
        rows.append({
            "job": int(number) if str(number).isdigit() else number,
            "status": job.get("status", "running"),
            "overrides": overrides,
            "val_bpc": result.get("val_bpc"),
            "steps": result.get("steps"),
            "train_seconds": result.get("train_seconds"),
            "export": result.get("export", ""),
            "error": job.get("error", ""),
            "folder": job_dir.name,
        })
    rows.sort(key=lambda r: (not isinstance(r["job"], int), r["job"] if isinstance(r["job"], int) else 0, r["folder"]))
    # The config column: the overrides that differ between jobs (all of them for a lone job).
    per_job = [dict(o.partition("=")[::2] for o in row["overrides"]) for row in rows]
    varying = {key for values in per_job for key in values if len({v.get(key) for v in per_job}) > 1}
    for row in rows:
        shown = [o for o in row["overrides"] if len(rows) == 1 or o.partition("=")[0] in varying]
        row["config"] = " ".join(shown)
    return rows


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(rows: list[dict[str, Any]], sweep_dir: str | Path) -> str:
    done = [r for r in rows if r["val_bpc"] is not None]
    best = min(done, key=lambda r: r["val_bpc"]) if done else None
    lines = [f"# Sweep {sweep_dir}", "",
             f"{len(rows)} jobs: {sum(r['status'] == 'completed' for r in rows)} completed, "
             f"{sum(r['status'] == 'failed' for r in rows)} failed, "
             f"{sum(r['status'] == 'running' for r in rows)} running or stopped."
             + (f" Best val bpc {best['val_bpc']:.4f}: job {best['job']} ({best['config']})." if best else ""),
             "", "| job | status | config | val bpc | steps | train s | export |",
             "| ---: | --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        status = r["status"] + (f": {r['error']}" if r["error"] else "")
        cells = [str(r["job"]), status.replace("|", "\\|").replace("\n", " "), f"`{r['config']}`" if r["config"] else "",
                 _fmt(r["val_bpc"]), _fmt(r["steps"]), _fmt(r["train_seconds"], 1), r["export"] or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    return out.getvalue()


@contextlib.contextmanager
def _locked(sweep_dir: Path) -> Iterator[None]:
    """Serialise rewrites of the summary by jobs that end at the same time (parallel launchers)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the final rewrite at the end of the sweep still holds
        yield
        return
    with open(sweep_dir / ".summary.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_summary(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Rewrite ``summary.md`` and ``summary.csv`` in ``sweep_dir`` from its job folders; returns the rows."""
    sweep_dir = Path(sweep_dir)
    with _locked(sweep_dir):
        rows = collect_rows(sweep_dir)
        atomic_write_text(sweep_dir / "summary.md", render_markdown(rows, sweep_dir))
        atomic_write_text(sweep_dir / "summary.csv", render_csv(rows))
    return rows


def claim_export_name(sweep_dir: str | Path, name: str, job: int) -> str:
    """The export name of job ``job`` of a sweep: ``name``, or ``name-<job>`` when another job has it.

    Jobs of one sweep often share a name (``-m model.hidden=256,512`` trains two ``<corpus>-lstm``)
    and would overwrite each other's export.  The first job to export a name claims it with a file
    created exclusively in ``<sweep>/.exports/`` (safe with parallel and cluster launchers); a
    re-run of the same job (a requeue, ``resume=auto``) finds its own claim.
    """
    claims = Path(sweep_dir) / ".exports"
    claims.mkdir(parents=True, exist_ok=True)
    for candidate in (name, f"{name}-{job}"):
        path = claims / candidate
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if path.read_text(encoding="utf-8").strip() == str(job):
                return candidate
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{job}\n")
        return candidate
    return f"{name}-{job}"  # only reachable if a user's own name already ends in this job's suffix


class SweepSummary(Callback):
    """Hydra callback: record each multirun job, keep the sweep's summary table up to date."""

    def on_job_end(self, config: DictConfig, job_return, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        from textgen.training.distributed import is_rank_zero

        hydra = config.hydra
        if hydra.mode != RunMode.MULTIRUN or not is_rank_zero():
            return
        status = {JobStatus.COMPLETED: "completed", JobStatus.FAILED: "failed"}.get(job_return.status, "unknown")
        record = {"job": int(hydra.job.num), "status": status, "overrides": list(job_return.overrides or [])}
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the exception; .return_value would raise it
            record["error"] = f"{type(error).__name__}: {error}"
        atomic_write_text(Path(hydra.runtime.output_dir) / "job.json", json.dumps(record, indent=1) + "\n")
        write_summary(hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.is_dir():
            write_summary(sweep_dir)
            print(f"sweep summary: {sweep_dir / 'summary.md'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m textgen.training.sweep SWEEP_DIR``: rebuild the summary of a sweep folder and print it."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m textgen.training.sweep SWEEP_DIR", file=sys.stderr)
        sys.exit(2)
    rows = write_summary(args[0])
    print(render_markdown(rows, args[0]), end="")


if __name__ == "__main__":
    main()
