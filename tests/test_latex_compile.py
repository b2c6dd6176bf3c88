"""`form: latex` text compiles: samples go through real pdflatex, in the wrapper the docs promise.

Each sample's returned text (the form's ``\\begin{...}``, the prompt, the continuation) is put in
the export's preamble + ``\\begin{document}`` ... ``\\end{document}`` and compiled with
``pdflatex -halt-on-error``, several at a time.  Samples come from an *untrained* model (random
weights: the guarantee must not depend on the model) and from the tiny trained one of
``conftest.py`` at temperatures 0, 1 and 2, over budgets from the documented minimum up.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from textgen.export import export_model, load_export
from textgen.forms import prepare_form
from textgen.forms.latex_vocab import VocabularyConfig
from textgen.latex_export import PREAMBLE_FILE, VOCABULARY_FILE
from textgen.models import Seq2SeqLM
from textgen.pdflatex import compile_latex, wrap_document
from textgen.sampling import SamplingParams, generate

pytestmark = pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended "
           "texlive-pictures lmodern; .ci/run installs them)")

ENVIRONMENTS = ["lemma", "proof", "definition", None]
MIN_LETTERS = VocabularyConfig.min_env_letters  # what a lemma or proof holds, at least


@pytest.fixture(scope="module")
def trained(tiny_stacks):
    return load_export(tiny_stacks)


@pytest.fixture(scope="module")
def untrained(trained, tmp_path_factory):
    """The tiny model's architecture, tokenizer and LaTeX files with fresh random weights."""
    dest = tmp_path_factory.mktemp("untrained") / "untrained-stacks"
    files = {name: (trained.path / name).read_text(encoding="utf-8") for name in (PREAMBLE_FILE, VOCABULARY_FILE)}
    export_model(dest, Seq2SeqLM(trained.info.model), trained.tokenizer, name="untrained-stacks", corpus="stacks",
                 context_chars=trained.info.context_chars, target_chars=trained.info.target_chars,
                 extra_files=files)
    return load_export(dest)


def samples_of(loaded, temperatures, budgets, n=3, **params) -> list[tuple[str, str]]:
    """(what was asked, returned text) for every environment x temperature x budget."""
    out = []
    for env in ENVIRONMENTS:
        prepared = prepare_form({"kind": "latex", "environment": env}, loaded)
        for t in temperatures:
            for budget in budgets:
                got = generate(loaded, prepared.prompt,
                               SamplingParams(n=n, seed=budget, temperature=t, max_new_chars=budget, **params),
                               constraint=lambda i: prepared.new_constraint())
                out += [(f"{env} t={t} max_new_chars={budget}", prepared.echo + s.text) for s in got]
    return out


def assert_all_compile(loaded, texts: list[tuple[str, str]]) -> None:
    preamble = (loaded.path / PREAMBLE_FILE).read_text(encoding="utf-8")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: compile_latex(wrap_document(preamble, t[1]), timeout_s=60), texts))
    failed = [f"{what}: {r.error}\n{text}" for (what, text), r in zip(texts, results) if not r.ok]
    assert not failed, f"{len(failed)}/{len(texts)} did not compile:\n" + "\n\n".join(failed[:3])
    assert all(r.pages >= 1 for r in results)


def test_an_untrained_models_latex_compiles(untrained):
    # Random weights write random characters: only the form stands between them and pdflatex.
    # Budgets from the documented minimum (the form's own closing: 6 letters and \end{lemma} for a lemma) up.
    texts = samples_of(untrained, [1.0, 2.0], [MIN_LETTERS + len("\\end{lemma}"), 120], n=2)
    assert any("\\" in text[len("\\begin{lemma}\n"):] for _, text in texts)  # not all plain letters
    assert_all_compile(untrained, texts)


def test_a_trained_models_latex_compiles_at_temperatures_0_1_2(trained):
    texts = samples_of(trained, [0.0, 1.0, 2.0], [150], n=2)
    texts += samples_of(trained, [1.0], [60], n=2, top_k=5, top_p=0.9)
    assert_all_compile(trained, texts)


def test_below_the_minimum_the_text_still_compiles(trained):
    prepared = prepare_form({"kind": "latex", "environment": "lemma"}, trained, "Let $x^")
    got = generate(trained, prepared.prompt, SamplingParams(n=2, seed=1, max_new_chars=0),
                   constraint=lambda i: prepared.new_constraint())
    texts = [("lemma, prompt 'Let $x^', max_new_chars=0", prepared.echo + s.text) for s in got]
    owed = MIN_LETTERS - len("Let")  # the letters the lemma must still hold
    assert all(s.generated_chars == len("2$\\end{lemma}") + owed for s in got)  # the closing overruns, no more
    assert_all_compile(trained, texts)


def test_over_rest_the_returned_text_compiles_as_it_is(tiny_stacks, tmp_path):
    from live_server import LiveServer

    (tmp_path / "tiny-stacks").symlink_to(tiny_stacks.resolve(), target_is_directory=True)
    server = LiveServer({"checkpoints": tmp_path})
    try:
        request = {"model": "tiny-stacks", "seed": 5, "n": 2, "max_new_chars": 80, "temperature": 1.0,
                   "prompt": "Let $X$ be", "form": {"kind": "latex", "environment": "lemma"}}
        body = server.post("/v1/generate", request).json()
        texts = [s["text"] for s in body["samples"]]
        assert all(t.startswith("\\begin{lemma}\nLet $X$ be") and t.endswith("\\end{lemma}") for t in texts), texts
        events = server.stream({**request, "n": 1})
        streamed = "".join(e["text"] for e in events if isinstance(e, dict) and "text" in e)
        assert streamed == texts[0]  # the stream starts with the same opening and prompt
        latex = server.get("/v1/models/tiny-stacks/latex").json()
        assert latex["preamble"] == (tiny_stacks / PREAMBLE_FILE).read_text(encoding="utf-8")
        assert latex["document"] == "{preamble}\n\\begin{document}\n{text}\n\\end{document}\n"
        assert latex["macros"]["\\Spec"] == "\\mathop{\\mathrm{Spec}}"
    finally:
        server.close()
    assert_all_compile(load_export(tiny_stacks), [("REST lemma", t) for t in texts])
