"""Pure conversions from downloaded source files to train/val text, one per corpus.

Each builder implements the ``build`` rule of its entry in ``sources.json`` exactly: run on the
pinned files it reproduces the published train/val files byte for byte.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SPLIT_BUCKETS = 100  # split key: int(sha1(key).hexdigest(), 16) % SPLIT_BUCKETS

SHAKESPEARE_TRAIN_FRACTION = 0.9

TANG_RESERVED_BELOW = 5  # buckets 0-4: held out, in neither file
TANG_VAL_BELOW = 10  # buckets 5-9: val; 10-99: train
TANG_VERSE_WIDTHS = (5, 7)
TANG_PARAGRAPH_COUNTS = (2, 4)
TANG_UNTITLED = "无题"
TANG_CONVERSION = "t2s"
CJK_RANGE = "\u4e00-\u9fff"
POEM_SEPARATOR = "\n"  # between poems: with the last verse's newline, one blank line
VERSE_PATTERN = re.compile(f"([{CJK_RANGE}]+)，([{CJK_RANGE}]+)。")

STACKS_RESERVED_BELOW = 8  # buckets 0-7: held out
STACKS_VAL_BELOW = 16  # buckets 8-15: val; 16-99: train
STACKS_TRAIN_BUDGET = 6_000_000  # characters
STACKS_VAL_BUDGET = 600_000
STACKS_SEPARATOR = "\n"

SONGCI_RESERVED_BELOW = 5  # buckets 0-4: held out, in neither file
SONGCI_VAL_BELOW = 10  # buckets 5-9: val; 10-99: train
SONGCI_PUNCTUATION = "，。、？！；："
SONGCI_TEXT = re.compile(f"[{CJK_RANGE}{SONGCI_PUNCTUATION}]+")


@dataclass(frozen=True)
class Splits:
    """Training and validation text of one corpus."""

    train: str
    val: str


def split_bucket(key: str) -> int:
    """Split bucket of ``key``: ``int(sha1(key).hexdigest(), 16) % 100`` over its UTF-8 bytes."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % SPLIT_BUCKETS


def build_shakespeare(files: Sequence[Path]) -> Splits:
    """``input.txt`` as is: the first ``int(0.9 * n)`` characters train, the rest val."""
    if len(files) != 1:
        raise ValueError(f"shakespeare is built from exactly one file, got {len(files)}")
    text = Path(files[0]).read_bytes().decode("utf-8")
    cut = int(len(text) * SHAKESPEARE_TRAIN_FRACTION)
    return Splits(train=text[:cut], val=text[cut:])


@functools.lru_cache(maxsize=1)
def _t2s() -> Callable[[str], str]:
    import opencc  # imported here: only the Tang builder needs it

    return opencc.OpenCC(TANG_CONVERSION).convert


def _verse_width(paragraph: str) -> int | None:
    """Width of a verse ``A，B。`` whose halves have the same allowed width, else None."""
    match = VERSE_PATTERN.fullmatch(paragraph)
    if match is None:
        return None
    first, second = match.groups()
    if len(first) != len(second) or len(first) not in TANG_VERSE_WIDTHS:
        return None
    return len(first)


def _is_regular_poem(paragraphs: Sequence[str]) -> bool:
    """2 or 4 verses, all of one width (5 or 7 CJK characters per half)."""
    if len(paragraphs) not in TANG_PARAGRAPH_COUNTS:
        return False
    widths = {_verse_width(paragraph) for paragraph in paragraphs}
    return len(widths) == 1 and None not in widths


def _regular_poems(files: Sequence[Path]) -> Iterator[tuple[str, str]]:
    """``(title, body)`` of each regular poem of chinese-poetry JSON ``files``, simplified.

    Files in sorted path order, poems in file order; title and paragraphs are stripped, then
    converted with OpenCC t2s.  Kept: 2 or 4 paragraphs, each ``A，B。`` with A and B both 5 or both
    7 CJK characters (U+4E00-U+9FFF), one width per poem.  Exact duplicate bodies (paragraphs
    joined by newline) are dropped after their first occurrence; an empty title becomes 无题.
    """
    convert = _t2s()
    seen: set[str] = set()
    for path in sorted((Path(p) for p in files), key=lambda p: p.as_posix()):
        for poem in json.loads(path.read_bytes()):
            paragraphs = [convert(p.strip()) for p in poem.get("paragraphs") or []]
            if not _is_regular_poem(paragraphs):
                continue
            body = "\n".join(paragraphs)
            if body in seen:
                continue
            seen.add(body)
            yield convert((poem.get("title") or "").strip()) or TANG_UNTITLED, body


def _join_poems(poems: Sequence[str]) -> str:
    return POEM_SEPARATOR.join(poems)


def poem_bodies(text: str) -> set[str]:
    """The bodies (verses without the title line) of the poems of a built Tang-layout text."""
    return {poem.split("\n", 1)[1].rstrip("\n") for poem in text.split(POEM_SEPARATOR + "\n") if "\n" in poem}


def build_tang(files: Sequence[Path]) -> Splits:
    """Regular Tang poems (绝句, 律诗) from chinese-poetry ``poet.tang.*.json`` files, simplified.

    The poems of :func:`_regular_poems`; a poem is ``title\\nbody\\n``; poems are joined by one
    blank line.  Split by bucket of the body: 0-4 reserved, 5-9 val, 10-99 train.
    """
    train: list[str] = []
    val: list[str] = []
    for title, body in _regular_poems(files):
        bucket = split_bucket(body)
        if bucket < TANG_RESERVED_BELOW:
            continue
        (val if bucket < TANG_VAL_BELOW else train).append(f"{title}\n{body}\n")
    return Splits(train=_join_poems(train), val=_join_poems(val))


def build_songshi(files: Sequence[Path], tang: Splits) -> Splits:
    """Regular Song poems (``poet.song.*.json``) in the Tang layout, to pretrain a Tang model on.

    The rule of :func:`build_tang`, and also dropped: bodies present in the Tang train or val text
    (``tang``, the built Tang corpus) and bodies in the reserved buckets 0-4.  No split: every poem
    is training text.  The validation text is the Tang val text, since Song verse is read to write
    Tang verse better.
    """
    tang_bodies = poem_bodies(tang.train) | poem_bodies(tang.val)
    train = [f"{title}\n{body}\n" for title, body in _regular_poems(files)
             if body not in tang_bodies and split_bucket(body) >= TANG_RESERVED_BELOW]
    return Splits(train=_join_poems(train), val=tang.val)


def build_stacks(
    files: Sequence[Path],
    *,
    train_budget: int = STACKS_TRAIN_BUDGET,
    val_budget: int = STACKS_VAL_BUDGET,
) -> Splits:
    """Whole Stacks project chapters (``.tex``), split by chapter.

    Chapters in sorted file-name order, decoded as UTF-8 with errors replaced; the bucket of the
    file name decides: 0-7 reserved, 8-15 val, 16-99 train.  In order, a chapter joins its part
    unless the part (chapters joined by a newline) would grow past its budget in characters; the
    first chapter of a part is always taken.
    """
    parts: dict[str, list[str]] = {"train": [], "val": []}
    lengths = {"train": 0, "val": 0}
    budgets = {"train": train_budget, "val": val_budget}
    for path in sorted((Path(p) for p in files), key=lambda p: p.name):
        bucket = split_bucket(path.name)
        if bucket < STACKS_RESERVED_BELOW:
            continue
        part = "val" if bucket < STACKS_VAL_BELOW else "train"
        chapter = path.read_bytes().decode("utf-8", errors="replace")
        taken = parts[part]
        new_length = lengths[part] + (len(STACKS_SEPARATOR) if taken else 0) + len(chapter)
        if taken and new_length > budgets[part]:
            continue
        taken.append(chapter)
        lengths[part] = new_length
    return Splits(
        train=STACKS_SEPARATOR.join(parts["train"]), val=STACKS_SEPARATOR.join(parts["val"])
    )


def build_songci(files: Sequence[Path]) -> Splits:
    """Song ci (``ci.song.*.json``, already simplified), one block per ci: its tune, then its text.

    Files in sorted path order, ci in file order.  Kept: the tune name (``rhythmic``) and every
    paragraph consist only of CJK ideographs (U+4E00-U+9FFF) and ``，。、？！；：``.  A block is the
    tune on its first line and the paragraphs one a line; blocks are joined by one blank line; a
    body (paragraphs joined by newline) seen before is dropped.  Split by bucket of the body:
    0-4 reserved, 5-9 val, 10-99 train.
    """
    train: list[str] = []
    val: list[str] = []
    seen: set[str] = set()
    for path in sorted((Path(p) for p in files), key=lambda p: p.as_posix()):
        for ci in json.loads(path.read_bytes()):
            tune, paragraphs = ci.get("rhythmic") or "", ci.get("paragraphs") or []
            if not paragraphs or not all(SONGCI_TEXT.fullmatch(text) for text in (tune, *paragraphs)):
                continue
            body = "\n".join(paragraphs)
            if body in seen:
                continue
            seen.add(body)
            bucket = split_bucket(body)
            if bucket < SONGCI_RESERVED_BELOW:
                continue
            (val if bucket < SONGCI_VAL_BELOW else train).append(f"{tune}\n{body}\n")
    return Splits(train=_join_poems(train), val=_join_poems(val))


BUILDERS: dict[str, Callable[..., Splits]] = {
    "shakespeare": build_shakespeare,
    "tang": build_tang,
    "stacks": build_stacks,
    "songshi": build_songshi,
    "songci": build_songci,
}
"""The rule of each corpus: ``builder(files)``, or ``builder(files, <base>)`` for those of ``BUILT_FROM``."""

#: Corpora whose rule also reads another corpus's built text: songshi drops the Tang poems.
BUILT_FROM: dict[str, str] = {"songshi": "tang"}
