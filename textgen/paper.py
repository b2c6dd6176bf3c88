"""Write a whole paper: ``python -m textgen.paper checkpoint=stacks-gru out=paper.pdf seed=1``.

Options (``conf/paper.yaml``): ``title=...``, ``sections=N``, ``max_chars=...``, ``blocks=[...]``,
``sentence_chars``, ``seed`` and the sampler's ``temperature``, ``top_k``, ``top_p``, ``min_p``,
``repetition_penalty``.  The model writes, piece by piece, a title, sections
(each: a title, then the ``blocks``: paragraphs, definitions, lemmas with their proofs, remarks,
displayed equations) and an abstract; every piece is sampled with :func:`textgen.sampling.generate`
under the ``latex`` form (:func:`textgen.forms.prepare_latex`), reading the paper so far as its
context, so labels stay unique and every proof follows its theorem.

What makes it read like a paper (the form's rules, :class:`textgen.forms.latex.Rules`):

* every theorem-like environment and labelled display opens with ``\\label{`` (the model names
  it), and ``\\ref{`` completes only to labels already defined, so references point back to the
  paper's own numbered lemmas and equations;
* ``\\cite{`` completes only to keys of the export's ``bibliography.bib``; the paper ends with the
  works it cited (BibTeX, style ``amsalpha``; ``paper.bib`` is kept beside ``paper.tex``);
* displays and inline formulas stay narrower than the text block (an estimate of their width);
* every piece ends at a sentence end outside math: past its share of ``max_chars`` at the first
  one (``LatexConstraint.close_after_sentence``), and when the budget runs out the sentence is
  closed early rather than cut; pieces never open sections of their own, so none is empty.

``blocks`` name environments; one the model's vocabulary lacks is replaced by one of its own
theorem-like environments (or left out), and the command says so: a model trained on papers
that call a lemma ``lem`` writes ``lem``.  The document is the export's own preamble and an
``\\emergencystretch`` (:func:`paper_document`), then::

    \\begin{document}
    \\title{...}  \\begin{abstract} ... \\end{abstract}  \\maketitle
    \\section{...} ... \\bibliography{paper} \\end{document}

``paper.tex`` is always kept beside ``out``; with pdflatex installed the paper is compiled (twice,
for references, with BibTeX between when it cites, in a temporary folder, with a timeout and no
shell escape) and its page count printed; without it, one line says how to install LaTeX.  When
pdflatex fails, LaTeX's own error line is printed and the exit status is 1.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from textgen.atomic import atomic_write_bytes, atomic_write_text
from textgen.cli import hydra_command
from textgen.encoder_runtime import EncoderRuntimeError
from textgen.export import ExportError, LoadedModel, load_export, resolve_export
from textgen.forms import FormError
from textgen.forms.bibliography import BIBLIOGRAPHY_STYLE, cited_entries, cited_keys, read_bibliography
from textgen.forms.latex import LatexConstraint, LatexGrammar, Rules, latex_tables, prepare_latex
from textgen.forms.latex_vocab import Vocabulary
from textgen.models.fused_step import FusedStepError
from textgen.pdflatex import CompileResult, compile_latex, pdflatex_available, wrap_document
from textgen.sampling import SamplingParams, generate

INSTALL_HINT = ("pdflatex not found, so only {tex} was written: install LaTeX (Debian/Ubuntu: sudo apt-get install "
                "texlive-latex-base texlive-latex-recommended texlive-pictures lmodern) and run pdflatex {tex}")
PAPER_SAMPLING = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")
"""The sampler's options the paper passes on; it sets the others itself (length, seed per piece, stops)."""
TEXT_BLOCK = "text"
ABSTRACT_FROM = "remark"  # the abstract is written as this theorem-like environment's content, when it exists
PIECE_RULES = Rules(sentences=True, sections=False)
LABEL_PROMPT = "\\label{"


def resolve_blocks(blocks: list[str], grammar: LatexGrammar) -> tuple[list[str], list[str]]:
    """(the blocks this model can write, one note per change): a configured environment the
    model's LaTeX vocabulary lacks becomes one of its theorem-like environments (a similar name
    first: ``lemma`` -> ``lem``), a display without one is left out, and so is a ``proof``
    without a ``proof`` environment."""
    vocab = grammar.vocab
    start = grammar.start()
    theorems = [n for n in vocab.theorem_names() if grammar.can_begin(start, n)]
    displays = [n for n, e in sorted(vocab.environments.items())
                if e["role"] == "display" and grammar.can_begin(start, n)]
    known = set(vocab.environments)
    resolved, notes, unused = [], [], [t for t in theorems if t not in blocks]
    for block in map(str, blocks):
        if block == TEXT_BLOCK or block in known:
            resolved.append(block)
            continue
        if block == "proof":
            notes.append("proof left out (no proof environment)")
            continue
        if block.startswith(("equation", "align", "gather", "multline")) or block in ("displaymath",):
            if displays:
                resolved.append(displays[0])
                notes.append(f"{block} -> {displays[0]}")
            else:
                notes.append(f"{block} left out (no display environment)")
            continue
        if not theorems:
            resolved.append(TEXT_BLOCK)
            notes.append(f"{block} -> text (no theorem-like environment)")
            continue
        similar = [t for t in theorems if t[:3] == block[:3]]
        choice = (similar or unused or theorems)[0]
        if choice in unused:
            unused.remove(choice)
        resolved.append(choice)
        notes.append(f"{block} -> {choice}")
    # a proof follows a theorem-like environment, or it has nothing to prove
    kept = [b for i, b in enumerate(resolved) if b != "proof" or (i and vocab.environments.get(resolved[i - 1], {})
                                                                   .get("role") == "theorem")]
    return kept, notes


def paper_document(preamble: str, body: str, vocab: Vocabulary) -> str:
    """The paper's whole document: the export's preamble, then ``\\emergencystretch`` as wide as the
    widest inline formula the form writes (``vocab.inline_width_pt``), then ``body`` in ``document``.

    TeX breaks an inline formula only after a relation or a binary operator, so a line that ends
    before one may fall short of the text block by up to the formula's width; when no interword
    stretch makes up for that (a theorem's first line holds few spaces), TeX rather lets the line
    run past the margin (the overfull boxes of 18-35 pt that seeds 2, 14 and 20 of stacks-gru
    had).  The emergency stretch gives such a paragraph a third pass in which that line may be
    looser instead."""
    return wrap_document(f"{preamble.rstrip()}\n\\emergencystretch={vocab.inline_width_pt}pt", body)


@dataclass
class Paper:
    """A written paper: its parts and the whole LaTeX document."""

    title: str
    abstract: str
    body: str
    document: str
    chars: int  # characters the model wrote
    bib: str = ""  # the BibTeX entries it cites ("" when it cites none)
    bib_name: str = "paper"  # the .bib file \\bibliography names (without .bib)

    def compile(self, timeout_s: float) -> CompileResult:
        """pdflatex (and BibTeX when it cites), enough times for references to settle."""
        files = {f"{self.bib_name}.bib": self.bib} if self.bib else {}
        return compile_latex(self.document, timeout_s=timeout_s, keep_pdf=True, passes=2, files=files,
                             bibtex=bool(self.bib))

    @property
    def citations(self) -> list[str]:
        return cited_keys(self.document)


class PaperWriter:
    """Samples the pieces of one paper, reporting progress on stderr."""

    def __init__(self, loaded: LoadedModel, cfg: DictConfig, rules: Rules = PIECE_RULES) -> None:
        self.loaded, self.cfg, self.rules = loaded, cfg, rules
        #: (block, the piece as written) for every piece, in order; and the model's own log-probability
        #: of what it wrote (nats, before the form's masks)
        self.written: list[tuple[str, str]] = []
        self.logprob = 0.0
        tables, self._preamble = latex_tables(loaded.tokenizer, loaded.path)
        self.grammar = tables.grammar
        self.blocks, notes = resolve_blocks(list(cfg.blocks), self.grammar)
        if notes:
            print(f"paper: the model's LaTeX vocabulary lacks some of blocks={list(cfg.blocks)}; using its own "
                  f"environments: {'; '.join(notes)} (its theorem-like environments: "
                  f"{', '.join(self.grammar.vocab.theorem_names()) or 'none'})", file=sys.stderr, flush=True)
        pieces = cfg.sections * (1 + len(self.blocks)) + 2
        self.share = max(int(cfg.min_block_chars), int(cfg.max_chars) // max(pieces - 2, 1))
        self.pieces, self.done, self.chars = pieces, 0, 0
        self.started = time.perf_counter()
        self.seed = cfg.seed

    def _sample(self, environment: str | None, prompt: str, context: str, max_chars: int,
                stop: tuple[str, ...] = (), sentence: bool = True, rules: Rules | None = None) -> tuple[str, str]:
        """(echo, text) of one piece under the latex form after ``context``: about ``max_chars``
        characters, to the end of a sentence (``sentence``: the paper's rules) or cut at ``max_chars``."""
        prepared = prepare_latex(self.loaded, environment, prompt, context,
                                 (rules or self.rules) if sentence else Rules())
        budget = max_chars + int(self.cfg.sentence_chars) if sentence else max_chars
        chosen = {name: self.cfg[name] for name in PAPER_SAMPLING}
        params = SamplingParams(max_new_chars=budget, seed=self.seed, stop=stop, return_logprobs=True, **chosen)
        if self.seed is not None:
            self.seed += 1

        def constraint(index: int) -> LatexConstraint:
            form = prepared.new_constraint()
            if sentence:
                form.close_after_sentence(max_chars, int(self.cfg.word_chars))
            return form

        sample = generate(self.loaded, prepared.prompt, params, constraint=constraint)[0]
        self.chars += sample.generated_chars
        self.logprob += sample.logprob or 0.0
        self.written.append((environment or (TEXT_BLOCK if sentence else "title"), prepared.echo + sample.text))
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
        for block in self.blocks:
            environment = None if block == TEXT_BLOCK else str(block)
            try:
                echo, text = self._sample(environment, self._label_prompt(environment), body, self.share)
            except FormError as error:  # e.g. no theorem for a proof to follow
                self._progress(f"section {index}: {block} left out ({error})")
                continue
            body += echo + text + "\n\n"
            self._progress(f"section {index}: {block}")
        return body

    def _label_prompt(self, environment: str | None) -> str:
        """``\\label{`` for what carries a number (theorem-like environments, displays with labels)."""
        entry = self.grammar.vocab.environments.get(environment or "")
        if entry is None or "label" not in self.grammar.vocab.commands:
            return ""
        if entry["role"] == "theorem" or (entry["role"] == "display" and entry["labels"]):
            return LABEL_PROMPT
        return ""

    def write(self, bib_name: str = "paper") -> Paper:
        cfg = self.cfg
        body = ""
        for index in range(1, int(cfg.sections) + 1):
            body = self.section(index, body)
        title = str(cfg.title) if cfg.title is not None else self.heading(body)
        self._progress(f"title: {title}")
        abstract = self.abstract(body)
        self._progress("abstract")
        front = f"\\title{{{title}}}\n\\begin{{abstract}}\n{abstract}\n\\end{{abstract}}\n\\maketitle\n\n"
        bibliography = read_bibliography(self.loaded.path) or ""
        bib = cited_entries(bibliography, front + body)
        back = f"\n\n\\bibliographystyle{{{BIBLIOGRAPHY_STYLE}}}\n\\bibliography{{{bib_name}}}" if bib else ""
        document = paper_document(self.preamble(), front + body.rstrip() + back, self.grammar.vocab)
        return Paper(title, abstract, body, document, self.chars, bib, bib_name)

    def abstract(self, body: str) -> str:
        """A paragraph written as the content of a remark (the abstract has no environment of its own
        in the corpus), continuing the paper so that its labels stay unique."""
        environment = ABSTRACT_FROM if ABSTRACT_FROM in self._vocab_envs() else None
        _, text = self._sample(environment, "", body, self.share, rules=replace(self.rules, labels=False))
        closing = f"\\end{{{environment}}}"
        return text[: -len(closing)].strip() if environment and text.endswith(closing) else text.strip()

    def _vocab_envs(self) -> set[str]:
        return set(self.grammar.vocab.environments)

    def preamble(self) -> str:
        return self._preamble


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
        paper = PaperWriter(loaded, cfg).write(bib_name=tex.stem)
    except FormError as error:
        print(f"error: {error.field}: {error}", file=sys.stderr)
        return 2
    except (ExportError, EncoderRuntimeError, FusedStepError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    atomic_write_text(tex, paper.document)
    print(f"wrote {tex} ({paper.chars:,} characters written by {loaded.name}): {paper.title}")
    if paper.bib:
        atomic_write_text(tex.with_suffix(".bib"), paper.bib)
        print(f"wrote {tex.with_suffix('.bib')}: the {len(paper.citations)} works it cites")
    if not pdflatex_available():
        print(INSTALL_HINT.format(tex=tex))
        return 0
    result = paper.compile(float(cfg.latex_timeout_s))
    if not result.ok or result.pdf is None:
        print(f"error: pdflatex failed on {tex} (kept): {result.error}", file=sys.stderr)
        return 1
    atomic_write_bytes(out, result.pdf)
    print(f"wrote {out}: {result.pages} page{'s' if result.pages != 1 else ''}")
    return 0


main = hydra_command("paper", run)


if __name__ == "__main__":
    main()
