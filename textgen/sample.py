"""Generate text from an export: ``python -m textgen.sample checkpoint=<folder or name> [options]``.

A thin shell over :func:`textgen.sampling.generate`, the API the server and evaluation use too.
One sample streams to stdout as it is written; ``n`` > 1 samples are generated as one batch and
printed in turn.  ``best_of=k`` draws k candidates as one batch and prints the ``n`` the model finds
most likely per character, best first, each with its log-probability per character.  ``form=jueju|lushi|latex`` (with ``chars_per_line``, ``acrostic``, ``title``,
``rhyme``, ``environment``) samples under a form of :mod:`textgen.forms`, exactly as the REST
API's ``form`` object does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from textgen.cli import command_line
from textgen.export import ExportError, load_export, resolve_export
from textgen.forms import FormError, prepare_form
from textgen.sampling import Sample, SamplingError, SamplingParams, generate

CONFIG_PATH = str(Path(__file__).resolve().parent.parent / "conf")


def sampling_params(cfg: DictConfig) -> SamplingParams:
    """The :class:`SamplingParams` named in a sample config."""
    stop = OmegaConf.to_container(cfg.stop) if cfg.stop is not None else []
    if isinstance(stop, str):
        stop = [stop]
    return SamplingParams(
        max_new_chars=cfg.max_new_chars, temperature=float(cfg.temperature), top_k=cfg.top_k,
        top_p=float(cfg.top_p), repetition_penalty=float(cfg.repetition_penalty), seed=cfg.seed,
        stop=stop, n=cfg.n, best_of=cfg.best_of,
    )


def form_request(cfg: DictConfig) -> dict | None:
    """The API ``form`` object named by the options ``form``, ``chars_per_line``, ``acrostic``, ...

    Options that were given but do not belong to the kind are passed on, so that
    :func:`textgen.forms.prepare_form` rejects them as the server would.
    """
    if cfg.form is None:
        return None
    form: dict = {"kind": str(cfg.form)}
    if form["kind"] in ("jueju", "lushi"):
        form["chars_per_line"] = cfg.chars_per_line
    for key in ("acrostic", "title", "environment"):
        if cfg[key] is not None:
            form[key] = str(cfg[key])
    if cfg.rhyme:
        form["rhyme"] = cfg.rhyme
    return form


def run(cfg: DictConfig) -> int:
    """Sample as ``cfg`` says; returns a process exit code."""
    try:
        params = sampling_params(cfg)
        prompt = str(cfg.prompt)
        if cfg.prompt_file:
            prompt = Path(cfg.prompt_file).read_text(encoding="utf-8")
        loaded = load_export(resolve_export(cfg.checkpoint), device=cfg.device)
        prepared = prepare_form(form_request(cfg), loaded, prompt)
        constraint = None
        if prepared is not None:
            prompt = prepared.prompt
            constraint = lambda index: prepared.new_constraint()  # noqa: E731
        out = sys.stdout
        streaming = params.candidates == 1
        if streaming:
            out.write(prompt)
            out.flush()

        def on_text(index: int, text: str) -> None:
            if streaming:
                out.write(text)
                out.flush()

        started = time.perf_counter()
        samples = generate(loaded, prompt, params, on_text=on_text, constraint=constraint)
        seconds = time.perf_counter() - started
    except FormError as error:
        print(f"error: {error.field}: {error}", file=sys.stderr)
        return 2
    except (SamplingError, ExportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if streaming:
        out.write("\n")
    else:
        for i, sample in enumerate(samples):
            out.write(f"--- sample {i + 1}/{len(samples)} ({_describe(sample, params)}) ---\n{prompt}{sample.text}\n")
    chars = sum(s.generated_chars for s in samples)
    print(f"[{loaded.name}: {chars} characters in {seconds:.2f} s, {chars / max(seconds, 1e-9):,.0f} chars/s; "
          f"finish: {', '.join(s.finish_reason for s in samples)}]", file=sys.stderr)
    return 0


def _describe(sample: Sample, params: SamplingParams) -> str:
    """The header words of a printed sample: its finish reason, and its rank score under best_of."""
    if params.candidates == params.n:
        return sample.finish_reason
    return (f"{sample.finish_reason}, candidate {sample.index + 1}/{params.candidates}, "
            f"{sample.logprob_per_char:.3f} nats/char")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="sample")
def _main(cfg: DictConfig) -> None:
    code = run(cfg)
    if code:
        sys.exit(code)


def main() -> None:
    """Entry point: ``python -m textgen.sample`` / ``textgen-sample``."""
    sys.argv[1:] = command_line(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
