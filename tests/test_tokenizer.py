"""The character tokenizer: exact round-trips, byte fallback for unseen characters, clear errors."""

import pytest

from textgen.tokenizer import CharTokenizer, TokenizerError

TRAIN = "秦川雄帝宅，函谷壮皇居。\n\\begin{lemma} Let $X$ be a scheme.\n\tIndented  two  spaces\n\nEnd.\n"


@pytest.fixture(scope="module")
def tok() -> CharTokenizer:
    return CharTokenizer.train_on_text(TRAIN)


@pytest.mark.parametrize("text", [
    TRAIN,
    "\n\n\n",
    "   leading and trailing   ",
    "a\tb\t\tc",
    "函谷壮皇居。\n绮殿千寻起，",
    "\\frac{a}{b} \\\\ $x^2$",
    "",
])
def test_round_trip_of_training_style_text(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_unseen_characters_become_utf8_bytes_not_unknowns(tok):
    text = "Ω 😀 龘 ñ Q"  # none of these is in the training text
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert 0 not in ids  # never <unk>
    pieces = [tok.pieces[i] for i in ids]
    assert "<0xF0>" in pieces and "<0x9F>" in pieces  # the emoji as its 4 UTF-8 bytes
    assert tok.byte_fallback_count(text) == 5
    assert tok.count_chars(ids) == len(text)


def test_seen_characters_are_single_pieces(tok):
    for ch in "秦\n\\{ $X":
        assert len(tok.encode(ch)) == 1, ch
    assert tok.byte_fallback_count("秦川\n") == 0


def test_chars_per_token_counts_a_multibyte_character_once(tok):
    ids = tok.encode("龘")
    assert len(ids) == 3
    assert [tok.chars_per_token[i] for i in ids] == [1, 0, 0]


def test_save_and_load_give_the_same_tokenizer(tok, tmp_path):
    tok.save(tmp_path / "tokenizer.model")
    again = CharTokenizer.load(tmp_path / "tokenizer.model")
    assert again.pieces == tok.pieces
    assert again.encode(TRAIN) == tok.encode(TRAIN)


def test_bounded_sample_training_keeps_every_line_char(tmp_path):
    lines = [f"line {i} ü" for i in range(5000)]
    tok = CharTokenizer.train(lines, max_sentences=100, seed=1)
    assert tok.decode(tok.encode("line 42 ü")) == "line 42 ü"


def test_empty_text_and_broken_model_are_clear_errors(tmp_path):
    with pytest.raises(TokenizerError, match="empty"):
        CharTokenizer.train_on_text("")
    (tmp_path / "broken.model").write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="SentencePiece"):
        CharTokenizer.load(tmp_path / "broken.model")


@pytest.mark.parametrize("text", [
    TRAIN,
    "unseen: Ω 😀 龘 ñ Q, controls \x00\x7f, a BMP edge \uffff and the last code point \U0010ffff",
    "函谷壮皇居。\n\n绮殿千寻起，离宫百雉余。 連甍遙接漢",  # seen and unseen CJK
    "  runs   of\tspaces\r\n\n\nand newlines\n",
    "",
])
def test_encode_array_gives_exactly_the_sentencepiece_ids(tok, text):
    ids = tok.encode_array(text)
    assert ids.tolist() == tok.encode(text)
    assert tok.decode(ids.tolist()) == text


def test_encode_array_rejects_what_cannot_round_trip(tok):
    with pytest.raises(TokenizerError, match="U\\+2581"):
        tok.encode_array("a \u2581 b")
    with pytest.raises(TokenizerError, match="surrogate"):
        tok.encode_array("a \ud800")


def _reservoir_item_by_item(items, limit, seed):
    """Li's algorithm L one item at a time: the reference the batched sample must equal."""
    import itertools
    import math
    import random

    rng, iterator = random.Random(seed), iter(items)
    reservoir = list(itertools.islice(iterator, limit))
    if len(reservoir) < limit:
        return reservoir
    weight = math.exp(math.log(rng.random() or 1e-300) / limit)
    while True:
        skip = int(math.log(rng.random() or 1e-300) / math.log1p(-weight)) if weight < 1.0 else 0
        item = next(itertools.islice(iterator, skip, None), None)
        if item is None:
            return reservoir
        reservoir[rng.randrange(limit)] = item
        weight *= math.exp(math.log(rng.random() or 1e-300) / limit)


def test_the_batched_reservoir_sample_is_the_line_by_line_one():
    import random

    from textgen.tokenizer import batched, reservoir_sample, reservoir_sample_batches

    items = [f"line {i}" for i in range(5000)]
    rng = random.Random(1)
    for limit in (1, 7, 100, 4999, 5000, 6000):
        expected = _reservoir_item_by_item(items, limit, seed=3)
        assert reservoir_sample(items, limit, seed=3) == expected
        for size in (1, 3, 64, 10_000):
            assert reservoir_sample_batches(batched(items, size), limit, seed=3) == expected
        cuts = sorted(rng.sample(range(len(items)), 50))
        uneven = [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)])] + [[]]  # empty batches too
        assert sum(map(len, uneven)) == len(items)
        assert reservoir_sample_batches(uneven, limit, seed=3) == expected
