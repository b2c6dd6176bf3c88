"""Generate text from an export: ``python -m textgen.sample checkpoint=<folder or name> [options]``.

A thin shell over :func:`textgen.sampling.generate`, the API the server and evaluation use too.
One sample streams to stdout as it is written; ``n`` > 1 samples are generated as one batch and
printed in turn.  ``best_of=k`` draws k candidates as one batch and prints the ``n`` the model finds
most likely per character, best first, each with its log-probability per character.  Every option
of :class:`textgen.sampling.SamplingParams` is an option of the script under its own name and default
(``conf/sample.yaml`` composes them from the dataclass); ``return_logprobs=true`` and
``top_logprobs=k`` print each sample's log-probability and each character's top k to stderr.
``form=<kind>`` (``jueju``, ``lushi``, ``latex``: the kinds of :data:`textgen.forms.FORM_KINDS`, with
the fields of the kind's dataclass as options: ``chars_per_line``, ``acrostic``, ``title``, ``rhyme``,
``tones``, ``no_repeat``, ``keywords``, ``book``, ``first_verse_rhymes``, ``environment``) samples
under a form of :mod:`textgen.forms`, exactly as the REST API's ``form`` object does.  ``revise=<poem> verse=<k>`` (with the poem's form) prints
``n`` alternatives for its verse ``k`` instead, as ``POST /v1/poems/revise`` does
(:mod:`textgen.forms.revise`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from textgen.cli import hydra_command
from textgen.encoder_runtime import EncoderRuntimeError
from textgen.export import ExportError, load_export, resolve_export
from textgen.forms import FORM_CLASSES, FormError, api_fields, form_keys, prepare_form
from textgen.forms.revise import DRAWS_PER_CANDIDATE, prepare_revision, rank_candidates
from textgen.models.fused_step import FusedStepError
from textgen.quantization import QuantizeError
from textgen.sampling import Sample, SamplingError, SamplingParams, generate


def sampling_params(cfg: DictConfig) -> SamplingParams:
    """The :class:`SamplingParams` of a sample config: each of its fields is an option of the same name."""
    values = {}
    for spec in dataclasses.fields(SamplingParams):
        value = cfg[spec.name]
        values[spec.name] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    if isinstance(values["stop"], str):
        values["stop"] = [values["stop"]]
    return SamplingParams(**values)


def form_request(cfg: DictConfig) -> dict | None:
    """The API ``form`` object named by the option ``form`` and the options named like its fields.

    The options are the fields of :data:`textgen.forms.FORM_CLASSES` (one source for the API, the
    OpenAPI schema and these options); an option is passed on when it differs from its default.
    Options that were given but do not belong to the kind are passed on too, so that
    :func:`textgen.forms.prepare_form` rejects them as the server would.
    """
    if cfg.form is None:
        return None
    kind = str(cfg.form)
    form: dict = {"kind": kind}
    own_class = FORM_CLASSES.get(kind)
    classes = dict.fromkeys([own_class] if own_class else []) | dict.fromkeys(FORM_CLASSES.values())
    fields: dict[str, dataclasses.Field] = {}
    for cls in classes:  # the kind's own fields first: their defaults are the ones that count
        for f in api_fields(cls):
            fields.setdefault(f.name, f)
    own = form_keys(own_class) if own_class else set()
    for name, spec in fields.items():
        if name == "kind" or name not in cfg:
            continue
        value = cfg[name]
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if spec.default is dataclasses.MISSING:  # a required field: passed to the kinds that have it
            if name in own:
                form[name] = value
        elif value is not None and value != spec.default and not (value == [] and spec.default == ()):
            form[name] = _typed(value, spec.metadata.get("schema", {}))
    return form


def _typed(value, schema: dict):
    """An option as the API field's type wants it (Hydra reads ``acrostic=1234`` as a number,
    ``keywords=江`` as one string)."""
    if schema.get("type") == "string":
        return str(value)
    if schema.get("type") == "array" and isinstance(value, (str, int)):
        return [str(value)]
    if schema.get("type") == "array" and isinstance(value, list):
        return [str(v) for v in value]
    return value


def run(cfg: DictConfig) -> int:
    """Sample as ``cfg`` says; returns a process exit code."""
    try:
        params = sampling_params(cfg)
        prompt = str(cfg.prompt)
        if cfg.prompt_file:
            prompt = Path(cfg.prompt_file).read_text(encoding="utf-8")
        loaded = load_export(resolve_export(cfg.checkpoint), device=cfg.device, quantize=str(cfg.quantize),
                             encoder_runtime=str(cfg.encoder_runtime), decode_step=str(cfg.decode_step))
        if loaded.runtime_choice is not None:  # what `auto` chose, and the timings it chose by
            print(f"[{loaded.name}: {loaded.runtime_choice.summary()}]", file=sys.stderr)
        if cfg.revise:
            return _revise(cfg, loaded, params)
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
    except (SamplingError, ExportError, QuantizeError, EncoderRuntimeError, FusedStepError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if streaming:
        out.write("\n")
    else:
        for i, sample in enumerate(samples):
            out.write(f"--- sample {i + 1}/{len(samples)} ({_describe(sample, params)}) ---\n{prompt}{sample.text}\n")
    if params.return_logprobs or params.top_logprobs:
        for i, sample in enumerate(samples):
            print(_logprob_report(i, len(samples), sample), file=sys.stderr)
    chars = sum(s.generated_chars for s in samples)
    print(f"[{loaded.name}: {chars} characters in {seconds:.2f} s, {chars / max(seconds, 1e-9):,.0f} chars/s; "
          f"finish: {', '.join(s.finish_reason for s in samples)}]", file=sys.stderr)
    return 0


def _logprob_report(i: int, count: int, sample: Sample) -> str:
    """A sample's log-probability (``return_logprobs``), and each character's top alternatives (``top_logprobs``)."""
    lines = [f"[sample {i + 1}/{count}: log-probability {sample.logprob:.4f} nats, "
             f"{sample.logprob_per_char:.4f} nats/char]"]
    for char, value, top in zip(sample.text, sample.char_logprobs or [], sample.top_logprobs or []):
        alternatives = "  ".join(f"{other!r} {lp:.3f}" for other, lp in top.items())
        lines.append(f"{char!r}\t{value:.3f}\t{alternatives}")
    return "\n".join(lines)


def _revise(cfg: DictConfig, loaded, params: SamplingParams) -> int:
    """Print ``n`` alternatives for verse ``cfg.verse`` of the poem ``cfg.revise``, best first."""
    form = form_request(cfg)
    if form is None:
        raise FormError("form", "`revise` needs the poem's form (form=jueju or form=lushi, chars_per_line, ...)")
    if cfg.verse is None:
        raise FormError("verse", "`revise` needs `verse`, the number of the verse to rewrite (from 1)")
    poem = str(cfg.revise).replace("\\n", "\n")
    plan = prepare_revision(form, loaded, poem, cfg.verse)
    draws = dataclasses.replace(params, n=params.n * DRAWS_PER_CANDIDATE, best_of=None,
                                max_new_chars=plan.form.chars_per_line)
    started = time.perf_counter()
    drawn = generate(loaded, plan.prompt, draws, constraint=lambda index: plan.new_constraint())
    candidates = rank_candidates(loaded, plan, [s.text for s in drawn], params.n)
    seconds = time.perf_counter() - started
    print(f"verse {cfg.verse}: {plan.original}")
    for i, candidate in enumerate(candidates):
        print(f"--- candidate {i + 1}/{len(candidates)} ({candidate.logprob:.2f} nats) ---\n"
              f"{plan.title_line}{candidate.poem}")
    print(f"[{loaded.name}: {len(drawn)} verses drawn, {len(candidates)} distinct kept, in {seconds:.2f} s]",
          file=sys.stderr)
    return 0


def _describe(sample: Sample, params: SamplingParams) -> str:
    """The header words of a printed sample: its finish reason, and its rank score under best_of."""
    if params.candidates == params.n:
        return sample.finish_reason
    return (f"{sample.finish_reason}, candidate {sample.index + 1}/{params.candidates}, "
            f"{sample.logprob_per_char:.3f} nats/char")


main = hydra_command("sample", run)


if __name__ == "__main__":
    main()
