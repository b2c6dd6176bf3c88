"""Large corpora: compressed files and folders read lazily, token ids memory-mapped, the same windows."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, corpus_file

import textgen.data.corpus as corpus_module
import textgen.data.tokens as tokens_module
from textgen.data.corpus import CorpusConfig, CorpusError, load_corpus, open_corpus
from textgen.data.tokens import ids_dtype, tokenize_corpus, train_lines
from textgen.data.windows import RandomOrder, RandomWindows, TiledWindows, train_order
from textgen.tokenizer import CharTokenizer, _line_pieces

POEM = "春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。\n"


def poems(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    chars = list("山水风月花鸟云雨春秋江湖天地人心")
    return [f"题{i}\n" + "".join(rng.choice(chars, 10)) + "，" + "".join(rng.choice(chars, 10)) + "。\n" + POEM
            for i in range(n)]


def config(path, tmp_path, **extra) -> CorpusConfig:
    return CorpusConfig(name="mine", path=str(path), cache_dir=str(tmp_path / "cache"), **extra)


def test_a_gzip_corpus_reads_and_tokenizes_like_the_plain_file(tmp_path):
    text = "\n".join(poems(300))  # a blank line between poems
    (tmp_path / "plain.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "poems.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write(text)
    plain, packed = load_corpus(config(tmp_path / "plain.txt", tmp_path)), load_corpus(config(tmp_path / "poems.txt.gz", tmp_path))
    assert (packed.train, packed.val) == (plain.train, plain.val)
    assert packed.val.startswith("题") and packed.train.endswith("\n\n")  # split between documents

    ids = tokenize_corpus(config(tmp_path / "poems.txt.gz", tmp_path), progress=False, memmap=True)
    tokenizer = CharTokenizer.train_on_text(plain.train)
    assert ids.tokenizer.model_proto == tokenizer.model_proto
    assert isinstance(ids.train_ids, np.memmap) and ids.train_ids.dtype == np.uint16
    assert ids.train_ids.tolist() == tokenizer.encode(plain.train)
    assert ids.val_ids.tolist() == tokenizer.encode(plain.val)
    assert (ids.train_chars, ids.val_chars) == (len(plain.train), len(plain.val))
    meta = json.loads((ids.cache / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["train"]["tokens"] == len(ids.train_ids)
    assert meta["tokenizer_sha256"] and meta["source"]["kind"] == "local"


def test_a_folder_of_plain_and_compressed_files_is_split_by_files(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    texts = ["".join(poems(40, seed)) for seed in range(4)]
    (folder / "a.txt").write_text(texts[0], encoding="utf-8")
    (folder / "b.txt.bz2").write_bytes(bz2.compress(texts[1].encode("utf-8")))
    (folder / "sub" / "c.txt.xz").write_bytes(lzma.compress(texts[2].encode("utf-8")))
    (folder / "z.txt.gz").write_bytes(gzip.compress(texts[3].encode("utf-8")))
    (folder / ".hidden").write_text("never read", encoding="utf-8")
    corpus = load_corpus(config(folder, tmp_path, val_fraction=0.25))
    assert corpus.train == "".join(texts[:3]) and corpus.val == texts[3]

    first = tokenize_corpus(config(folder, tmp_path, val_fraction=0.25), progress=False, memmap=True)
    assert first.tokenizer.decode(first.train_ids.tolist()) == corpus.train
    assert first.tokenizer.decode(first.val_ids.tolist()) == corpus.val
    assert not first.reused
    again = tokenize_corpus(config(folder, tmp_path, val_fraction=0.25), progress=False, memmap=True)
    assert again.reused and again.cache == first.cache
    assert np.array_equal(again.train_ids, first.train_ids)
    # A changed file is a different corpus: the ids are written anew.
    (folder / "a.txt").write_text(texts[0] + "新", encoding="utf-8")
    changed = tokenize_corpus(config(folder, tmp_path, val_fraction=0.25), progress=False, memmap=True)
    assert not changed.reused and changed.cache != first.cache


def test_a_given_tokenizer_is_kept_and_counts_byte_fallback(tmp_path):
    tokenizer = CharTokenizer.train_on_text(POEM)
    (tmp_path / "new.txt").write_text(POEM * 50 + "Ω新\n" + POEM * 10, encoding="utf-8")
    for memmap in (False, True):
        ids = tokenize_corpus(config(tmp_path / "new.txt", tmp_path), tokenizer, progress=False, memmap=memmap)
        assert ids.tokenizer is tokenizer or ids.tokenizer.model_proto == tokenizer.model_proto
        assert ids.stats["train"]["byte_fallback"] + ids.stats["val"]["byte_fallback"] == 2


def test_memmap_windows_are_the_in_memory_windows(tmp_path, monkeypatch):
    text = corpus_file("shakespeare").read_text(encoding="utf-8")[:40_000]
    (tmp_path / "s.txt").write_text(text, encoding="utf-8")
    mapped = tokenize_corpus(config(tmp_path / "s.txt", tmp_path), progress=False, memmap=True)
    memory = tokenize_corpus(config(tmp_path / "s.txt", tmp_path), progress=False, memmap=False)
    # Small chunks: the same ids from the pool of two encoding processes.
    monkeypatch.setattr(tokens_module, "CHUNK_CHARS", 2048)
    pooled = tokenize_corpus(config(tmp_path / "s.txt", tmp_path), progress=False, memmap=False, workers=2)
    assert np.array_equal(pooled.train_ids, memory.train_ids) and np.array_equal(pooled.val_ids, memory.val_ids)
    assert isinstance(mapped.train_ids, np.memmap) and not isinstance(memory.train_ids, np.memmap)
    tensor = torch.tensor(CharTokenizer.train_on_text(load_corpus(config(tmp_path / "s.txt", tmp_path)).train)
                          .encode(text[: mapped.train_chars]))
    for kind, args in ((RandomWindows, (16, 24, 3)), (TiledWindows, (16, 24))):
        reference = kind(tensor, *args)
        for ids in (mapped.train_ids, memory.train_ids):
            windows = kind(ids, *args)
            assert len(windows) == len(reference)
            for i in [0, 1, 2, len(reference) // 2, len(reference) - 1]:
                for got, want in zip(windows[i], reference[i]):
                    assert got.dtype == want.dtype and torch.equal(got, want)
    # DataLoader workers get the file name, not the ids.
    shipped = pickle.dumps(RandomWindows(mapped.train_ids, 16, 24))
    assert len(shipped) < 2000
    assert torch.equal(pickle.loads(shipped)[5][3], RandomWindows(tensor, 16, 24)[5][3])


def test_tokenizer_lines_stream_like_split_and_the_sample_is_bounded(tmp_path, monkeypatch):
    long_line = "长" * 5000 + "x" * 3000
    text = "a\nbb\n\n" + long_line + "\nend\n"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    reader = open_corpus(config(tmp_path / "t.txt", tmp_path, split="tail", val_fraction=0.01))
    for chunk in (3, 1000, 1 << 20):
        monkeypatch.setattr(corpus_module, "CHUNK_CHARS", chunk)
        streamed = list(train_lines(reader))
        assert list(_line_pieces(streamed)) == list(_line_pieces(load_corpus(reader.config).train.split("\n")))
    lines = [f"line {i} {chr(0x4E00 + i % 500)}" for i in range(20_000)]
    (tmp_path / "many.txt").write_text("\n".join(lines), encoding="utf-8")
    small = tokenize_corpus(config(tmp_path / "many.txt", tmp_path, input_sentence_size=1000), progress=False)
    assert small.tokenizer.decode(small.val_ids.tolist()) == load_corpus(config(tmp_path / "many.txt", tmp_path)).val


def test_ids_dtype_and_the_order_of_many_windows():
    assert ids_dtype(65_536) == np.uint16 and ids_dtype(65_537) == np.uint32
    order = RandomOrder(10_007, seed=3)
    first = list(order)
    assert sorted(first) == list(range(10_007)) and first != sorted(first)
    order.set_epoch(1)
    assert list(order) != first and sorted(order) == list(range(10_007))
    assert train_order(TiledWindows(torch.arange(10, 200), 4, 4), seed=0) is None  # small: torch's shuffle


def test_broken_compressed_files_are_clear_errors(tmp_path):
    (tmp_path / "bad.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(CorpusError, match="cannot be read"):
        load_corpus(config(tmp_path / "bad.txt.gz", tmp_path))
    (tmp_path / "latin.txt.xz").write_bytes(lzma.compress("café\n".encode("latin-1") * 10))
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_corpus(config(tmp_path / "latin.txt.xz", tmp_path))


def test_the_tokens_command_fills_the_cache(tmp_path):
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress("\n".join(poems(50)).encode("utf-8")))
    result = subprocess.run([sys.executable, "-m", "textgen.data.tokens", str(tmp_path / "c.txt.gz"),
                             "--cache-dir", str(tmp_path / "cache"), "--quiet"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["train"]["chars"] > 0 and (tmp_path / "cache" / "tokens").is_dir()
    assert os.path.isfile(os.path.join(report["cache"], "train.bin"))
