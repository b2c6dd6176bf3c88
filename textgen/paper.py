"""Write a whole paper: ``python -m textgen.paper checkpoint=stacks-gru out=paper.pdf seed=1``.

Options (``conf/paper.yaml``): ``title=...``, ``sections=N``, ``max_chars=...``, ``blocks=[...]``,
``sentence_chars``, ``seed`` and the sampler's ``temperature``, ``top_k``, ``top_p``, ``min_p``,
``repetition_penalty``.  The model writes, piece by piece, a title, sections
(each: a title, then the ``blocks``: paragraphs, definitions, lemmas with their proofs, remarks,
displayed equations) and an abstract; every piece is sampled with :func:`textgen.sampling.generate`
under the ``latex`` form (:func:`textgen.forms.prepare_latex`), reading the paper so far as its
context, so labels stay unique and every proof follows its theorem; each piece ends at the first
sentence end past its share of ``max_chars`` (``LatexConstraint.close_after_sentence``).  The document is the export's
own preamble, then::

    \\begin{document}
    \\title{...}  \\begin{abstract} ... \\end{abstract}  \\maketitle
    \\section{...} ... \\end{document}

``paper.tex`` is always kept beside ``out``; with pdflatex installed the paper is compiled (twice,
for references, in a temporary folder, with a timeout and no shell escape) and its page count
printed; without it, one line says how to install LaTeX.  When pdflatex fails, LaTeX's own error
line is printed and the exit status is 1.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from textgen.atomic import atomic_write_bytes, atomic_write_text
from textgen.cli import hydra_command
from textgen.encoder_runtime import EncoderRuntimeError
from textgen.export import ExportError, LoadedModel, load_export, resolve_export
from textgen.forms import FormError, prepare_latex
from textgen.forms.latex import LatexConstraint, latex_tables
from textgen.forms.latex_vocab import compile_latex, pdflatex_available, wrap_document
from textgen.models.fused_step import FusedStepError
from textgen.sampling import SamplingParams, generate

INSTALL_HINT = ("pdflatex not found, so only {tex} was written: install LaTeX (Debian/Ubuntu: sudo apt-get install "
                "texlive-latex-base texlive-latex-recommended texlive-pictures lmodern) and run pdflatex {tex}")
PAPER_SAMPLING = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")
"""The sampler's options the paper passes on; it sets the others itself (length, seed per piece, stops)."""
TEXT_BLOCK = "text"
ABSTRACT_FROM = "remark"  # the abstract is written as this theorem-like environment's content, when it exists


@dataclass
class Paper:
    """A written paper: its parts and the whole LaTeX document."""

    title: str
    abstract: str
    body: str
    document: str
    chars: int  # characters the model wrote


class PaperWriter:
    """Samples the pieces of one paper, reporting progress on stderr."""

    def __init__(self, loaded: LoadedModel, cfg: DictConfig) -> None:
        self.loaded, self.cfg = loaded, cfg
        pieces = cfg.sections * (1 + len(cfg.blocks)) + 2
        self.share = max(int(cfg.min_block_chars), int(cfg.max_chars) // max(pieces - 2, 1))
        self.pieces, self.done, self.chars = pieces, 0, 0
        self.started = time.perf_counter()
        self.seed = cfg.seed

    def _sample(self, environment: str | None, prompt: str, context: str, max_chars: int,
                stop: tuple[str, ...] = (), sentence: bool = True) -> tuple[str, str]:
        """(echo, text) of one piece under the latex form after ``context``: about ``max_chars``
        characters, to the end of a sentence (``sentence``) or cut at ``max_chars``."""
        prepared = prepare_latex(self.loaded, environment, prompt, context)
        budget = max_chars + int(self.cfg.sentence_chars) if sentence else max_chars
        chosen = {name: self.cfg[name] for name in PAPER_SAMPLING}
        params = SamplingParams(max_new_chars=budget, seed=self.seed, stop=stop, **chosen)
        if self.seed is not None:
            self.seed += 1

        def constraint(index: int) -> LatexConstraint:
            form = prepared.new_constraint()
            if sentence:
                form.close_after_sentence(max_chars)
            return form

        sample = generate(self.loaded, prepared.prompt, params, constraint=constraint)[0]
        self.chars += sample.generated_chars
        return prepared.echo, sample.text

    def _progress(self, what: str) -> None:
        self.done += 1
        print(f"[paper {self.done}/{self.pieces}] {what} ({self.chars:,} characters, "
              f"{time.perf_counter() - self.started:.0f} s)", file=sys.stderr, flush=True)

    def heading(self, context: str) -> str:
        """A title the model writes as if opening a section (plain text, no closing brace)."""
        _, text = self._sample(None, "\\section{", context, int(self.cfg.title_chars), stop=("}",), sentence=False)
        return " ".join(text.split()) or "Notes"

    def section(self, index: int, body: str) -> str:
        """``body`` with one more section."""
        title = self.heading(body)
        body += f"\\section{{{title}}}\n\n"
        self._progress(f"section {index}: {title}")
        for block in self.cfg.blocks:
            environment = None if block == TEXT_BLOCK else str(block)
            try:
                echo, text = self._sample(environment, "", body, self.share)
            except FormError as error:  # e.g. no theorem for a proof to follow
                self._progress(f"section {index}: {block} left out ({error})")
                continue
            body += echo + text + "\n\n"
            self._progress(f"section {index}: {block}")
        return body

    def write(self) -> Paper:
        cfg = self.cfg
        body = ""
        for index in range(1, int(cfg.sections) + 1):
            body = self.section(index, body)
        title = str(cfg.title) if cfg.title is not None else self.heading(body)
        self._progress(f"title: {title}")
        abstract = self.abstract(body)
        self._progress("abstract")
        front = f"\\title{{{title}}}\n\\begin{{abstract}}\n{abstract}\n\\end{{abstract}}\n\\maketitle\n\n"
        document = wrap_document(self.preamble(), front + body.rstrip())
        return Paper(title, abstract, body, document, self.chars)

    def abstract(self, body: str) -> str:
        """A paragraph written as the content of a remark (the abstract has no environment of its own
        in the corpus), continuing the paper so that its labels stay unique."""
        environment = ABSTRACT_FROM if ABSTRACT_FROM in self._vocab_envs() else None
        _, text = self._sample(environment, "", body, self.share)
        closing = f"\\end{{{environment}}}"
        return text[: -len(closing)].strip() if environment and text.endswith(closing) else text.strip()

    def _vocab_envs(self) -> set[str]:
        tables, _ = latex_tables(self.loaded.tokenizer, self.loaded.path)
        return set(tables.grammar.vocab.environments)

    def preamble(self) -> str:
        return latex_tables(self.loaded.tokenizer, self.loaded.path)[1]


def run(cfg: DictConfig) -> int:
    """Write (and compile) the paper ``cfg`` describes; returns a process exit code."""
    OmegaConf.set_readonly(cfg, True)
    out = Path(str(cfg.out))
    tex = out.with_suffix(".tex")
    fixed = [name for name in ("max_new_chars", "stop", "n", "best_of", "return_logprobs", "top_logprobs")
             if cfg[name] != SamplingParams.__dataclass_fields__[name].default and cfg[name] != []]
    if fixed:
        print(f"error: the paper sets {', '.join(fixed)} itself (its options: max_chars, seed, "
              f"{', '.join(PAPER_SAMPLING)})", file=sys.stderr)
        return 2
    if int(cfg.sections) < 1 or int(cfg.max_chars) < 0:
        print(f"error: sections must be >= 1 and max_chars >= 0 (got {cfg.sections}, {cfg.max_chars})", file=sys.stderr)
        return 2
    try:
        loaded = load_export(resolve_export(cfg.checkpoint), device=cfg.device,
                             encoder_runtime=str(cfg.encoder_runtime), decode_step=str(cfg.decode_step))
        if loaded.runtime_choice is not None:  # what `auto` chose, and the timings it chose by
            print(f"[{loaded.name}: {loaded.runtime_choice.summary()}]", file=sys.stderr)
        prepare_latex(loaded)  # a model without LaTeX files is refused before anything is written
        torch.manual_seed(0 if cfg.seed is None else int(cfg.seed))
        paper = PaperWriter(loaded, cfg).write()
    except FormError as error:
        print(f"error: {error.field}: {error}", file=sys.stderr)
        return 2
    except (ExportError, EncoderRuntimeError, FusedStepError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    atomic_write_text(tex, paper.document)
    print(f"wrote {tex} ({paper.chars:,} characters written by {loaded.name}): {paper.title}")
    if not pdflatex_available():
        print(INSTALL_HINT.format(tex=tex))
        return 0
    result = compile_latex(paper.document, timeout_s=float(cfg.latex_timeout_s), keep_pdf=True, passes=2)
    if not result.ok or result.pdf is None:
        print(f"error: pdflatex failed on {tex} (kept): {result.error}", file=sys.stderr)
        return 1
    atomic_write_bytes(out, result.pdf)
    print(f"wrote {out}: {result.pages} page{'s' if result.pages != 1 else ''}")
    return 0


main = hydra_command("paper", run)


if __name__ == "__main__":
    main()
