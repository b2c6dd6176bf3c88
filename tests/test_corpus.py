"""Corpora and windows: local files and folders, splits, clear errors, window layout."""

import pytest
import torch
from conftest import DATA_DIR

from textgen.data.corpus import CorpusConfig, CorpusError, load_corpus
from textgen.data.windows import DocumentStarts, RandomWindows, TiledWindows, as_stream, window_at
from textgen.tokenizer import BOS_ID, PAD_ID


def local(path, **extra) -> CorpusConfig:
    return CorpusConfig(name="mine", path=str(path), **extra)


def test_a_single_file_is_split_by_its_last_tenth(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 90 + "y" * 10, encoding="utf-8")
    corpus = load_corpus(local(tmp_path / "a.txt"))
    assert corpus.train == "x" * 90 and corpus.val == "y" * 10


def test_a_file_of_poems_is_split_between_poems(tmp_path):
    poems = [f"题{i}\n春眠不觉晓，处处闻啼鸟。\n" for i in range(20)]
    (tmp_path / "poems.txt").write_text("\n".join(poems), encoding="utf-8")
    corpus = load_corpus(local(tmp_path / "poems.txt"))
    assert corpus.train + corpus.val == "\n".join(poems)
    assert corpus.val.startswith("题") and corpus.train.endswith("\n\n")
    assert 0 < len(corpus.val) <= 0.1 * len(corpus.train + corpus.val) + 1


def test_a_folder_is_split_by_files_and_crlf_is_kept(tmp_path):
    for i in range(5):
        (tmp_path / f"ch{i}.tex").write_text(f"\\section{{{i}}}\r\ntext {i}\n" * 3, encoding="utf-8")
    corpus = load_corpus(local(tmp_path, val_fraction=0.2))
    assert corpus.val == "\\section{4}\r\ntext 4\n" * 3
    assert "\r\n" in corpus.train


@pytest.mark.parametrize("content,message", [(None, "no such file"), ("", "is empty"), ("   \n", "is empty")])
def test_missing_and_empty_corpora_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        load_corpus(local(path))


def test_non_utf8_is_a_clear_error(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1") * 10)
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_corpus(local(tmp_path / "latin1.txt"))


def test_registered_corpora_read_ready_files():
    if not (DATA_DIR / "tang" / "train.txt").is_file():
        pytest.skip("shared corpora not found: set TEXTGEN_DATA_DIR")
    tang = load_corpus(CorpusConfig(name="tang", source="tang", data_dir=str(DATA_DIR),
                                    ready={"train": "tang/train.txt", "val": "tang/val.txt"}))
    assert len(tang.train) == 1_782_224 and tang.train.startswith("帝京篇十首 一\n")
    shakespeare = load_corpus(CorpusConfig(name="shakespeare", source="shakespeare", data_dir=str(DATA_DIR),
                                           ready={"raw": "shakespeare/input.txt"}))
    assert (len(shakespeare.train), len(shakespeare.val)) == (1_003_854, 111_540)


def test_window_layout():
    stream = as_stream(list(range(10, 30)))
    context, length, inputs, targets = window_at(stream, 5, context_chars=8, target_chars=4)
    assert context.tolist() == [BOS_ID, 10, 11, 12, 13, PAD_ID, PAD_ID, PAD_ID] and length == 5
    assert inputs.tolist() == [13, 14, 15, 16] and targets.tolist() == [14, 15, 16, 17]


def test_document_contexts_start_where_the_document_starts():
    """With document starts a window reads ``[BOS]`` and its document so far, as the sampler reads a
    prompt that starts a document; from ``C`` tokens in, the context is the same as without them."""
    sep = [7, 7]
    ids = [10, 11, 12, *sep, 20, 21, 22, 23, 24, 25, 26, 27, *sep, 30]
    starts = DocumentStarts(ids, sep)
    assert starts.starts.tolist() == [1, 6, 16]
    stream = as_stream(ids)
    # a document's first token: the context is [BOS] alone, and the decoder starts from it
    context, length, inputs, targets = window_at(stream, 6, 4, 3, starts.before(6))
    assert context.tolist() == [BOS_ID, PAD_ID, PAD_ID, PAD_ID] and length == 1
    assert inputs.tolist() == [BOS_ID, 20, 21] and targets.tolist() == [20, 21, 22]
    # two tokens in: [BOS] 20 21, never the separator or the document before it
    context, length, inputs, _ = window_at(stream, 8, 4, 3, starts.before(8))
    assert context[:length].tolist() == [BOS_ID, 20, 21] and inputs.tolist() == [21, 22, 23]
    # C tokens in and beyond: the plain window
    for p in (10, 12):
        assert all(torch.equal(a, b) for a, b in zip(window_at(stream, p, 4, 3, starts.before(p)),
                                                     window_at(stream, p, 4, 3)))
    tiles = TiledWindows(torch.tensor(ids), 4, 3, documents=starts)
    targets = torch.cat([tiles[i][3] for i in range(len(tiles))])
    assert targets[targets != PAD_ID].tolist() == ids  # still every token once
    with pytest.raises(ValueError, match="separator"):
        DocumentStarts(ids, [])


def test_prompt_windows_read_a_documents_first_line_as_the_sampler_reads_a_prompt():
    """``data.prompt_windows``: one more training window per document, its context ``[BOS]`` and the
    document's first line (a ci's tune), its targets what follows: the sampler's situation exactly."""
    sep, nl = [7, 7], 5
    ids = [10, 11, nl, 12, 13, *sep, 20, nl, 21, nl, 22, *sep, 30, 31, *sep, 40, nl]
    starts = DocumentStarts(ids, sep)
    # documents 1 and 2 have a first line; 3 has none before the next separator; 4's ends the stream
    assert starts.after_first_lines(ids, nl).tolist() == [4, 10]
    assert starts.after_first_lines(ids, 99).tolist() == []
    windows = RandomWindows(torch.tensor(ids), 4, 3, stride=5, documents=starts, prompt_line_end=nl)
    assert windows.prompt_starts.tolist() == [4, 10]
    plain = RandomWindows(torch.tensor(ids), 4, 3, stride=5, documents=starts)
    assert len(windows) == len(plain) + 2
    assert all(torch.equal(a, b) for i in range(len(plain)) for a, b in zip(windows[i], plain[i]))
    context, length, inputs, targets = windows[len(plain) + 1]
    assert context[:length].tolist() == [BOS_ID, 20, nl]
    assert inputs.tolist() == [nl, 21, nl] and targets.tolist() == [21, nl, 22]
    with pytest.raises(ValueError, match="documents' starts"):
        RandomWindows(torch.tensor(ids), 4, 3, prompt_line_end=nl)


def test_tiled_windows_score_every_token_once():
    ids = torch.arange(10, 33)
    tiles = TiledWindows(ids, context_chars=4, target_chars=5)
    targets = torch.cat([tiles[i][3] for i in range(len(tiles))])
    assert targets[targets != PAD_ID].tolist() == ids.tolist()


def test_random_windows_are_full_and_strided():
    ids = torch.arange(10, 60)
    windows = RandomWindows(ids, context_chars=4, target_chars=8, stride=3)
    assert len(windows) == (51 - 8 - 1) // 3 + 1
    for i in range(len(windows)):
        assert PAD_ID not in windows[i][3].tolist()
    with pytest.raises(ValueError, match="shorter than one window"):
        RandomWindows(torch.arange(10, 15), context_chars=4, target_chars=8)


def test_documents_are_joined_and_split_alike_for_every_chunk_size(tmp_path, monkeypatch):
    """The reader yields the text ``separator.join(non-blank documents)`` and cuts val at a
    document boundary, whichever chunk size it reads with (pieces then hold many documents)."""
    import random

    from textgen.data import corpus as corpus_module

    rng = random.Random(0)
    alphabet = ["a", "bc", "\n", "\n\n", " ", "\t", "春", "\n\n\n", "\r\n"]
    for trial in range(60):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 150)))
        if not text.strip():
            continue
        (tmp_path / "t.txt").write_text(text, encoding="utf-8")
        documents = [d for d in text.split("\n\n") if d.strip()]
        results = set()
        for chunk in (1, 2, 5, 64, 1 << 20):
            monkeypatch.setattr(corpus_module, "CHUNK_CHARS", chunk)
            try:
                corpus = load_corpus(local(tmp_path / "t.txt", split="auto", val_fraction=0.3))
            except CorpusError as error:  # a blank val tail: the same error at every chunk size
                results.add(str(error))
                continue
            assert corpus.train + corpus.val == "\n\n".join(documents)
            results.add((corpus.train, corpus.val))
        assert len(results) == 1
        if len(documents) >= 2 and not isinstance(next(iter(results)), str):
            _, val = results.pop()
            val_documents = val.split("\n\n")
            assert val_documents == documents[len(documents) - len(val_documents):]
