"""Lightning's DDP launch inside a Hydra app: which process writes, and what ranks 1.. re-run.

Lightning's ``ddp`` strategy starts ranks 1.. by re-running the command that started rank 0
(``python -m textgen.train <overrides> hydra.run.dir=<run dir>``).  In a Hydra multirun that
command is the whole sweep (``-m ...``), so every rank 1 would run every job of the sweep again,
in a sweep folder of its own.  :func:`multirun_child_command` points the children at the one job
instead; :func:`end_previous_job` releases what a DDP job leaves in the process before the next
job of a sweep starts its own.  A cluster launcher (SLURM) starts every rank itself and needs
neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
# What Lightning's script launcher sets in rank 0's own environment for its children.
LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def is_rank_zero() -> bool:
    """Whether this process is (or will be) global rank 0, read from the launchers' variables."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def quiet_other_ranks() -> None:
    """On ranks > 0, log warnings to the console only: rank 0 writes the run's log file.

    Hydra opens a log file for every process it starts (Lightning names rank 1's
    ``train_ddp_process_1.log``); an empty one is removed.
    """
    if is_rank_zero():
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
            path = Path(handler.baseFilename)
            with contextlib.suppress(OSError):
                if path.stat().st_size == 0:
                    path.unlink()
    root.setLevel(max(root.level, logging.WARNING))


def end_previous_job() -> None:
    """Release the process group and launch variables that an earlier DDP job of a sweep left.

    Lightning keeps both until the process exits; the next job would otherwise join the old
    group (whose other ranks have exited) and believe its processes were started externally.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    torch.distributed.destroy_process_group()
    for name in LAUNCH_VARIABLES:
        os.environ.pop(name, None)


def launches_child_scripts(trainer) -> bool:
    """Whether ``trainer.fit`` will start ranks 1.. by re-running this program (Lightning ``ddp``)."""
    from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    return (isinstance(launcher, _SubprocessScriptLauncher)
            and not launcher.cluster_environment.creates_processes_externally)


@contextlib.contextmanager
def multirun_child_command(trainer, resume_path: str | None, module: str = "textgen.train") -> Iterator[None]:
    """Within a multirun job, make Lightning's DDP children run this job alone, in its folder.

    For the duration of the block, ``sys.argv`` is the job's own overrides (what the sweeper
    chose for it included) with the checkpoint rank 0 resumes from, and Hydra's ``run.dir`` is the
    job's output folder: Lightning builds the children's command from exactly these two.
    Outside a multirun, or with a strategy that starts no scripts, it changes nothing.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or not launches_child_scripts(trainer):
        yield
        return
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main_spec is None or main_spec.name != module:
        # e.g. a joblib worker: Lightning would start the worker's program, not textgen.train.
        raise ValueError(
            f"trainer.strategy={trainer.strategy.__class__.__name__.lower()} starts its other processes by re-running "
            f"`python -m {module}`, which this process is not (hydra/launcher={hydra_cfg.launcher._target_}); "
            "run one device per job (trainer.devices=1) or use the basic launcher"
        )
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("resume=")]
    job_argv = [sys.argv[0], *overrides, f'resume="{resume_path}"' if resume_path else "resume=false"]
    saved_argv, saved_dir = sys.argv, hydra_cfg.run.dir
    sys.argv = job_argv
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg.run):
            hydra_cfg.run.dir = saved_dir
