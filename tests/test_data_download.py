"""Corpus download and build: real HTTP against a local server (never the internet).

The last tests check the build rules against the published corpora; they read them from
``$TEXTGEN_DATA_DIR`` (the folder holding shakespeare/, tang/, stacks/) and skip without it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from textgen.data import download
from textgen.data.builders import (
    BUILDERS,
    Splits,
    build_shakespeare,
    build_songci,
    build_songshi,
    build_stacks,
    build_tang,
    poem_bodies,
    split_bucket,
)
from textgen.data.download import (
    GITHUB_RAW_PREFIX,
    ChecksumError,
    DownloadError,
    download_file,
    fetch_source,
    mirror_url,
)
from textgen.data.prepare import main, prepare_corpus
from textgen.data.sources import Source, SourceFile, get_source, registered_sources

DATA_DIR_ENV = "TEXTGEN_DATA_DIR"
TEST_REPO = "example/corpus"
TEST_COMMIT = "0123456789abcdef0123456789abcdef01234567"
TRUNCATED_PREFIX = "/truncated/"  # the server announces more bytes than it sends


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- local HTTP server


class _Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith(TRUNCATED_PREFIX):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only ten b")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``root``, recording request paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_Handler, directory=str(root))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.requests = []  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def requests(self) -> list[str]:
        return self._httpd.requests  # type: ignore[attr-defined]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    root = tmp_path / "www"
    root.mkdir()
    httpd = LocalServer(root)
    try:
        yield httpd
    finally:
        httpd.close()


def publish(server: LocalServer, name: str, files: dict[str, bytes]) -> Source:
    """Serve ``files`` as a raw.githubusercontent.com tree would; return their pinned Source."""
    entries = []
    for path, data in files.items():
        target = server.root / TEST_REPO / TEST_COMMIT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        url = f"{GITHUB_RAW_PREFIX}{TEST_REPO}/{TEST_COMMIT}/{quote(path)}"
        entries.append(SourceFile(path=path, url=url, sha256=sha256_hex(data), bytes=len(data)))
    return Source(name, TEST_REPO, TEST_COMMIT, "test", tuple(entries), build="test")


def assert_nothing_left(dest: Path) -> None:
    assert not dest.exists()
    if dest.parent.exists():
        assert list(dest.parent.iterdir()) == [], "temporary download file left behind"


# --------------------------------------------------------------------------- fixtures: corpora

SHAKESPEARE_TEXT = "First Citizen:\r\nSpeak.\n\nAll:\nSpeak, speak.\n"  # 43 chars; CRLF kept

TANG_FILES = {
    # Sorted path order is string order: 0, 1000, 200 (not 0, 200, 1000).
    "全唐诗/poet.tang.200.json": [
        {"title": "夜思", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
        {
            "title": "黃鶴樓",
            "paragraphs": [
                "昔人已乘黃鶴去，此地空餘黃鶴樓。",
                "黃鶴一去不復返，白雲千載空悠悠。",
                "晴川歷歷漢陽樹，芳草萋萋鸚鵡洲。",
                "日暮鄉關何處是，煙波江上使人愁。",
            ],
        },
        {"title": "江雪", "paragraphs": ["千山鳥飛絕，萬徑人蹤滅。", "孤舟蓑笠翁，獨釣寒江雪。"]},
        {"title": "六韻", "paragraphs": ["千山鳥飛絕，萬徑人蹤滅。"] * 6},
    ],
    "全唐诗/poet.tang.0.json": [
        {"title": "登鸛雀樓", "paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]},
        {"title": "田園樂", "paragraphs": ["桃紅復含宿雨，柳綠更帶朝煙。", "花落家童未掃，鶯啼山客猶眠。"]},
        {"title": "雜言", "paragraphs": ["床前明月光，疑是地上霜。", "朝辭白帝彩雲間，千里江陵一日還。"]},
        {"title": "三句", "paragraphs": ["白日依山盡，黃河入海流。"] * 3},
        {"title": "", "paragraphs": [" 春眠不覺曉，處處聞啼鳥。\n", "夜來風雨聲，花落知多少。"]},
        {"title": "缺字", "paragraphs": ["床前明□光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
        {
            "title": "  春望　",
            "paragraphs": [
                "國破山河在，城春草木深。",
                "感時花濺淚，恨別鳥驚心。",
                "烽火連三月，家書抵萬金。",
                "白頭搔更短，渾欲不勝簪。",
            ],
        },
        {"title": "半角", "paragraphs": ["床前明月光,疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
        {"title": "擴展A", "paragraphs": ["床前明月䝙，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
    ],
    "全唐诗/poet.tang.1000.json": [
        {"title": "靜夜思", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
        {
            "title": "早發白帝城",
            "paragraphs": ["朝辭白帝彩雲間，千里江陵一日還。", "兩岸猿聲啼不住，輕舟已過萬重山。"],
        },
        {  # bucket 1: reserved, in neither file
            "title": "夜雨寄北",
            "paragraphs": ["君問歸期未有期，巴山夜雨漲秋池。", "何當共剪西窗燭，卻話巴山夜雨時。"],
        },
        {"title": "長短", "paragraphs": ["床前明月光，千里江陵一日還。", "舉頭望明月，低頭思故鄉。"]},
        {"title": "單句", "paragraphs": ["床前明月光，疑是地上霜。"]},
        {"title": "合句", "paragraphs": ["白日依山盡，黃河入海流。欲窮千里目，更上一層樓。"] * 2},
        {"title": "春晓", "paragraphs": ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。"]},
        {"title": "\u3000", "paragraphs": ["紅豆生南國，春來發幾枝。", "願君多采擷，此物最相思。"]},
    ],
}

TANG_TRAIN = (
    "登鹳雀楼\n白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。\n"
    "\n春望\n国破山河在，城春草木深。\n感时花溅泪，恨别鸟惊心。\n"
    "烽火连三月，家书抵万金。\n白头搔更短，浑欲不胜簪。\n"
    "\n静夜思\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n"
    "\n早发白帝城\n朝辞白帝彩云间，千里江陵一日还。\n两岸猿声啼不住，轻舟已过万重山。\n"
    "\n无题\n红豆生南国，春来发几枝。\n愿君多采撷，此物最相思。\n"
    "\n江雪\n千山鸟飞绝，万径人踪灭。\n孤舟蓑笠翁，独钓寒江雪。\n"
)
TANG_VAL = (  # buckets 7 and 6
    "无题\n春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。\n"
    "\n黄鹤楼\n昔人已乘黄鹤去，此地空余黄鹤楼。\n黄鹤一去不复返，白云千载空悠悠。\n"
    "晴川历历汉阳树，芳草萋萋鹦鹉洲。\n日暮乡关何处是，烟波江上使人愁。\n"
)


def tex_chapter(title: str) -> bytes:
    text = f"\\input{{preamble}}\n\\begin{{document}}\n\\title{{{title}}}\n\\end{{document}}\n"
    return text.encode()


# Name buckets: algebraic 67, brauer 73, chow 20 (train); artin 14, bootstrap 11 (val);
# algebra 7, adequate 2 (reserved).
STACKS_FILES = {
    "chow.tex": tex_chapter("Chow Homology"),
    "artin.tex": tex_chapter("Artin's Axioms"),
    "algebra.tex": tex_chapter("Commutative Algebra"),
    "brauer.tex": b"\\title{Brauer}\r\n\xff bad byte\r\n",
    "bootstrap.tex": tex_chapter("Bootstrap"),
    "adequate.tex": tex_chapter("Adequate Modules"),
    "algebraic.tex": tex_chapter("Algebraic Stacks"),
}
STACKS_TRAIN = "\n".join(
    [
        tex_chapter("Algebraic Stacks").decode(),
        "\\title{Brauer}\r\n\ufffd bad byte\r\n",
        tex_chapter("Chow Homology").decode(),
    ]
)
STACKS_VAL = tex_chapter("Artin's Axioms").decode() + "\n" + tex_chapter("Bootstrap").decode()


def write_files(root: Path, files: dict[str, bytes]) -> list[Path]:
    paths = []
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def tang_bytes() -> dict[str, bytes]:
    return {
        path: json.dumps(poems, ensure_ascii=False).encode() for path, poems in TANG_FILES.items()
    }


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_pinned_corpora() -> None:
    sources = registered_sources()
    assert set(sources) == {"shakespeare", "tang", "stacks", "songshi", "songci"}
    for name, source in sources.items():
        assert source.name == name and source.files
        assert len({f.path for f in source.files}) == len(source.files)
        for file in source.files:
            assert file.url.startswith(f"{GITHUB_RAW_PREFIX}{source.repo}/{source.commit}/")
            assert re.fullmatch("[0-9a-f]{64}", file.sha256) and file.bytes > 0
    assert get_source("tang").files[0].path == "全唐诗/poet.tang.0.json"
    with pytest.raises(FrozenInstanceError):
        get_source("tang").name = "other"  # type: ignore[misc]


def test_unknown_corpus_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="shakespeare, songci, songshi, stacks, tang"):
        get_source("poems")


def test_mirror_url_replaces_the_raw_github_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    url = get_source("tang").files[0].url
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    assert mirror_url(url, None) == url
    mirrored = mirror_url(url, "http://127.0.0.1:8123")
    assert mirrored == "http://127.0.0.1:8123/" + url[len(GITHUB_RAW_PREFIX) :]
    assert "%E5%85%A8%E5%94%90%E8%AF%97/poet.tang.0.json" in mirrored
    monkeypatch.setenv(download.MIRROR_ENV, "http://mirror.example/raw/")
    assert mirror_url(url, None).startswith("http://mirror.example/raw/chinese-poetry/")
    other = "https://example.org/x.txt"
    assert mirror_url(other, "http://127.0.0.1:1/") == other


# --------------------------------------------------------------------------- download_file


def test_download_verifies_and_writes_the_file(server: LocalServer, tmp_path: Path) -> None:
    data = SHAKESPEARE_TEXT.encode() * 5000  # several chunks
    (server.root / "input.txt").write_bytes(data)
    dest = tmp_path / "raw" / "input.txt"
    url = server.base + "input.txt"
    result = download_file(url, dest, sha256_hex(data), len(data), progress=False)
    assert result == dest and dest.read_bytes() == data
    assert server.requests == ["/input.txt"]


def test_download_shows_a_progress_bar_named_after_the_file(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = b"x" * 1000
    (server.root / "input.txt").write_bytes(data)
    download_file(server.base + "input.txt", tmp_path / "input.txt", sha256_hex(data), len(data))
    assert "input.txt" in capsys.readouterr().err


def test_checksum_mismatch_leaves_nothing(server: LocalServer, tmp_path: Path) -> None:
    (server.root / "input.txt").write_bytes(b"tampered")
    dest = tmp_path / "raw" / "input.txt"
    expected = sha256_hex(b"original")
    with pytest.raises(ChecksumError) as caught:
        download_file(server.base + "input.txt", dest, expected, progress=False)
    message = str(caught.value)
    assert str(dest) in message and expected in message and sha256_hex(b"tampered") in message
    assert_nothing_left(dest)


def test_size_mismatch_is_a_checksum_error(server: LocalServer, tmp_path: Path) -> None:
    data = b"right bytes"
    (server.root / "input.txt").write_bytes(data)
    dest = tmp_path / "raw" / "input.txt"
    with pytest.raises(ChecksumError, match="size expected 12 bytes, got 11"):
        download_file(server.base + "input.txt", dest, sha256_hex(data), size=12, progress=False)
    assert_nothing_left(dest)


def test_http_404_names_the_url(server: LocalServer, tmp_path: Path) -> None:
    url = server.base + "missing.txt"
    with pytest.raises(DownloadError, match=re.escape(url) + ".*404") as caught:
        download_file(url, tmp_path / "missing.txt", sha256_hex(b""), progress=False)
    assert not isinstance(caught.value, ChecksumError)
    assert not (tmp_path / "missing.txt").exists()


def test_connection_refused_is_a_download_error(tmp_path: Path) -> None:
    with socket.socket() as closed_port:  # bound but not listening: connections are refused
        closed_port.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed_port.getsockname()[1]}/input.txt"
        with pytest.raises(DownloadError, match=re.escape(url) + ".*[Rr]efused"):
            download_file(url, tmp_path / "input.txt", sha256_hex(b""), progress=False)


def test_silent_server_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "TIMEOUT_S", 0.2)
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/input.txt"
        with pytest.raises(DownloadError, match=re.escape(url)):
            download_file(url, tmp_path / "input.txt", sha256_hex(b""), progress=False)
    assert not (tmp_path / "input.txt").exists()


def test_interrupted_transfer_leaves_no_partial_file(server: LocalServer, tmp_path: Path) -> None:
    url = server.base + TRUNCATED_PREFIX.strip("/") + "/input.txt"
    dest = tmp_path / "raw" / "input.txt"
    with pytest.raises(DownloadError, match=re.escape(url)):
        download_file(url, dest, sha256_hex(b"x" * 1000), 1000, progress=False)
    assert_nothing_left(dest)


def test_verified_file_is_not_downloaded_again(server: LocalServer, tmp_path: Path) -> None:
    source = publish(server, "shakespeare", {"data/input.txt": SHAKESPEARE_TEXT.encode()})
    raw = tmp_path / "raw"
    first = fetch_source(source, raw, mirror=server.base, progress=False)
    assert first == [raw / "data" / "input.txt"] and len(server.requests) == 1
    assert fetch_source(source, raw, mirror=server.base, progress=False) == first
    assert len(server.requests) == 1


def test_corrupted_cached_file_is_downloaded_again(server: LocalServer, tmp_path: Path) -> None:
    source = publish(server, "shakespeare", {"data/input.txt": SHAKESPEARE_TEXT.encode()})
    raw = tmp_path / "raw"
    (path,) = fetch_source(source, raw, mirror=server.base, progress=False)
    path.write_bytes(b"bit rot")
    fetch_source(source, raw, mirror=server.base, progress=False)
    assert path.read_bytes() == SHAKESPEARE_TEXT.encode() and len(server.requests) == 2


def test_fetch_uses_the_mirror_from_the_environment(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = publish(server, "tang", tang_bytes())
    monkeypatch.setenv(download.MIRROR_ENV, server.base)
    paths = fetch_source(source, tmp_path / "raw", progress=False)
    assert [p.relative_to(tmp_path / "raw").as_posix() for p in paths] == list(TANG_FILES)
    assert all(p.read_bytes() == d for p, d in zip(paths, tang_bytes().values()))


def test_source_paths_may_not_escape_the_raw_folder(tmp_path: Path) -> None:
    bad = SourceFile("../evil.txt", GITHUB_RAW_PREFIX + "a/b/c/evil.txt", "0" * 64, 1)
    source = Source("shakespeare", "a/b", "c", "test", (bad,), "test")
    with pytest.raises(ValueError, match="evil"):
        fetch_source(source, tmp_path / "raw", progress=False)


# --------------------------------------------------------------------------- builders


def test_shakespeare_split_is_int_of_90_percent(tmp_path: Path) -> None:
    (path,) = write_files(tmp_path, {"input.txt": SHAKESPEARE_TEXT.encode()})
    splits = build_shakespeare([path])
    assert splits == Splits(train=SHAKESPEARE_TEXT[:38], val=SHAKESPEARE_TEXT[38:])
    (odd,) = write_files(tmp_path, {"odd.txt": b"x" * 25})
    assert len(build_shakespeare([odd]).train) == 22  # int(22.5)


def test_tang_filters_converts_dedups_and_splits(tmp_path: Path) -> None:
    paths = write_files(tmp_path, tang_bytes())
    assert build_tang(paths) == Splits(train=TANG_TRAIN, val=TANG_VAL)
    assert build_tang(list(reversed(paths))) == Splits(train=TANG_TRAIN, val=TANG_VAL)


def test_stacks_split_by_file_name_keeps_bytes_and_newlines(tmp_path: Path) -> None:
    paths = write_files(tmp_path, STACKS_FILES)
    assert build_stacks(paths) == Splits(train=STACKS_TRAIN, val=STACKS_VAL)


def test_stacks_budget_skips_chapters_but_always_takes_the_first(tmp_path: Path) -> None:
    paths = write_files(
        tmp_path, {"algebraic.tex": b"a" * 50, "brauer.tex": b"b" * 40, "chow.tex": b"c" * 20}
    )
    assert build_stacks(paths, train_budget=75).train == "a" * 50 + "\n" + "c" * 20
    assert build_stacks(paths, train_budget=71).train == "a" * 50 + "\n" + "c" * 20  # equal fits
    assert build_stacks(paths, train_budget=70).train == "a" * 50
    assert build_stacks(paths, train_budget=10).train == "a" * 50


SONG_FILES = {
    "全唐诗/poet.song.0.json": [
        {"title": "登楼", "paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]},  # a Tang train body
        {"title": "晓", "paragraphs": ["春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。"]},  # a Tang val body
        {"title": "夜雨", "paragraphs": ["君問歸期未有期，巴山夜雨漲秋池。", "何當共剪西窗燭，卻話巴山夜雨時。"]},
        {"title": "梅花", "paragraphs": ["墻角數枝梅，淩寒獨自開。", "遙知不是雪，為有暗香來。"]},
        {"title": "梅", "paragraphs": ["墻角數枝梅，淩寒獨自開。", "遙知不是雪，為有暗香來。"]},  # duplicate body
        {"title": "", "paragraphs": ["橫看成嶺側成峰，遠近高低各不同。", "不識廬山真面目，只緣身在此山中。"]},
        {"title": "六言", "paragraphs": ["桃紅復含宿雨，柳綠更帶朝煙。", "花落家童未掃，鶯啼山客猶眠。"]},
    ],
}
SONG_TRAIN = (
    "梅花\n墙角数枝梅，凌寒独自开。\n遥知不是雪，为有暗香来。\n"
    "\n无题\n横看成岭侧成峰，远近高低各不同。\n不识庐山真面目，只缘身在此山中。\n"
)


def song_bytes() -> dict[str, bytes]:
    return {path: json.dumps(poems, ensure_ascii=False).encode() for path, poems in SONG_FILES.items()}


def test_songshi_drops_tang_bodies_reserved_buckets_and_duplicates(tmp_path: Path) -> None:
    paths = write_files(tmp_path, song_bytes())
    tang = Splits(train=TANG_TRAIN, val=TANG_VAL)
    assert build_songshi(paths, tang) == Splits(train=SONG_TRAIN, val=TANG_VAL)


SONGCI_FILES = {  # buckets: 35 train, 5 val, 0 reserved, 87 train
    "宋词/ci.song.1000.json": [
        {"rhythmic": "相见欢", "paragraphs": ["明月几时有，把酒问青天。", "不知天上宫阙，今夕是何年。"]},
        {"rhythmic": "浣溪沙", "paragraphs": ["明月几时有，把酒问青天。", "不知天上宫阙，今夕是何年。"]},  # seen
        {"rhythmic": "水调歌头", "paragraphs": ["明月几时有，把酒问青天。", "小楼昨夜又东风，故国不堪回首月明中。"]},
    ],
    "宋词/ci.song.0.json": [
        {"rhythmic": "浣溪沙", "paragraphs": ["一曲新词酒一杯。去年天气旧亭台。夕阳西下几时回。",
                                            "无可奈何花落去，似曾相识燕归来。小园香径独徘徊。"]},
        {"rhythmic": "声声慢", "paragraphs": ["乍暖还寒时候，最难将息。", "雁过也，正伤心，却是旧时相识。"]},
        {"rhythmic": "浪淘沙令", "paragraphs": ["帘外雨潺潺，春意阑珊。", "罗衾不耐五更寒。", "（缺）"]},  # not CJK
        {"rhythmic": "浪淘沙 其一", "paragraphs": ["帘外雨潺潺，春意阑珊。", "罗衾不耐五更寒。"]},  # a space
        {"rhythmic": "无词", "paragraphs": []},
    ],
}
SONGCI_TRAIN = (
    "浣溪沙\n一曲新词酒一杯。去年天气旧亭台。夕阳西下几时回。\n无可奈何花落去，似曾相识燕归来。小园香径独徘徊。\n"
    "\n相见欢\n明月几时有，把酒问青天。\n不知天上宫阙，今夕是何年。\n"
)
SONGCI_VAL = "声声慢\n乍暖还寒时候，最难将息。\n雁过也，正伤心，却是旧时相识。\n"


def test_songci_keeps_clean_ci_with_their_tune_drops_seen_bodies_and_splits(tmp_path: Path) -> None:
    files = {path: json.dumps(ci, ensure_ascii=False).encode() for path, ci in SONGCI_FILES.items()}
    assert build_songci(write_files(tmp_path, files)) == Splits(train=SONGCI_TRAIN, val=SONGCI_VAL)


def test_prepare_songshi_builds_the_tang_corpus_first(server: LocalServer, tmp_path: Path) -> None:
    """songshi's rule reads the Tang corpus: preparing it prepares (here: downloads) tang too."""
    cache = tmp_path / "cache"
    tang = publish(server, "tang", tang_bytes())
    prepare_corpus("tang", cache, mirror=server.base, progress=False, source=tang)
    song = publish(server, "songshi", song_bytes())
    train, val = prepare_corpus("songshi", cache, mirror=server.base, progress=False, source=song)
    assert (train.read_bytes().decode(), val.read_bytes().decode()) == (SONG_TRAIN, TANG_VAL)
    assert len(server.requests) == len(tang.files) + len(song.files)


# --------------------------------------------------------------------------- prepare_corpus


@pytest.mark.parametrize(
    ("name", "files", "expected"),
    [
        (
            "shakespeare",
            {"data/tinyshakespeare/input.txt": SHAKESPEARE_TEXT.encode()},
            (SHAKESPEARE_TEXT[:38], SHAKESPEARE_TEXT[38:]),
        ),
        ("tang", None, (TANG_TRAIN, TANG_VAL)),
        ("stacks", STACKS_FILES, (STACKS_TRAIN, STACKS_VAL)),
    ],
)
def test_prepare_through_the_mirror(
    server: LocalServer,
    tmp_path: Path,
    name: str,
    files: dict[str, bytes] | None,
    expected: tuple[str, str],
) -> None:
    source = publish(server, name, files if files is not None else tang_bytes())
    cache = tmp_path / "cache"
    train, val = prepare_corpus(name, cache, mirror=server.base, progress=False, source=source)
    assert (train, val) == (cache / name / "train.txt", cache / name / "val.txt")
    assert (train.read_bytes().decode(), val.read_bytes().decode()) == expected
    assert len(server.requests) == len(source.files)
    assert all((cache / name / "raw" / f.path).is_file() for f in source.files)

    again = functools.partial(prepare_corpus, name, cache, server.base, False, source)
    assert again() == (train, val)
    train.unlink()  # rebuilt from the verified raw files, still without a request
    again()
    assert train.read_bytes().decode() == expected[0]
    assert len(server.requests) == len(source.files)


def test_prepare_fetches_extra_files_and_copies_them_beside_the_splits(server: LocalServer, tmp_path: Path) -> None:
    preamble = b"\\documentclass{amsart}\n\\newtheorem{lemma}{Lemma}\n"
    chapters = publish(server, "stacks", STACKS_FILES)
    extra = publish(server, "stacks", {"preamble.tex": preamble}).files
    source = dataclasses.replace(chapters, extra_files=extra)
    cache = tmp_path / "cache"
    prepare_corpus("stacks", cache, mirror=server.base, progress=False, source=source)
    assert (cache / "stacks" / "preamble.tex").read_bytes() == preamble  # as it is, not part of train/val
    assert "newtheorem" not in (cache / "stacks" / "train.txt").read_text(encoding="utf-8")
    assert len(server.requests) == len(source.files) + 1
    (cache / "stacks" / "preamble.tex").unlink()  # an older cache without it: fetched again, verified
    prepare_corpus("stacks", cache, mirror=server.base, progress=False, source=source)
    assert (cache / "stacks" / "preamble.tex").read_bytes() == preamble
    assert len(server.requests) == len(source.files) + 1  # the verified raw copy is reused
    wrong = dataclasses.replace(source, extra_files=(dataclasses.replace(extra[0], sha256="0" * 64),))
    (cache / "stacks" / "preamble.tex").unlink()
    (cache / "stacks" / "raw" / "preamble.tex").unlink()
    with pytest.raises(ChecksumError):
        prepare_corpus("stacks", cache, mirror=server.base, progress=False, source=wrong)
    assert not (cache / "stacks" / "preamble.tex").exists()


def test_the_registered_stacks_source_pins_its_preamble_and_bibliography() -> None:
    preamble, bibliography = get_source("stacks").extra_files
    assert preamble.path == "preamble.tex" and len(preamble.sha256) == 64 and "preamble" in preamble.role
    assert bibliography.path == "my.bib" and len(bibliography.sha256) == 64 and "BibTeX" in bibliography.role


def test_prepare_prints_the_build_step(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = publish(server, "shakespeare", {"input.txt": SHAKESPEARE_TEXT.encode()})
    prepare_corpus("shakespeare", tmp_path, mirror=server.base, source=source)
    assert "building shakespeare" in capsys.readouterr().err


def test_prepare_rejects_a_source_for_another_corpus(server: LocalServer, tmp_path: Path) -> None:
    source = publish(server, "tang", tang_bytes())
    with pytest.raises(ValueError, match="'tang' given for corpus 'stacks'"):
        prepare_corpus("stacks", tmp_path, progress=False, source=source)
    assert server.requests == []


def test_cli_prints_cached_paths_without_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:9/")  # would fail if used
    folder = tmp_path / "shakespeare"
    folder.mkdir()
    expected = [folder / "train.txt", folder / "val.txt"]
    for path in expected:
        path.write_text("cached")
    assert main(["shakespeare", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(path) for path in expected]


def test_cli_reports_download_errors(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tang", "--cache-dir", str(tmp_path), "--mirror", server.base, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "404" in err
    assert server.base + "chinese-poetry/chinese-poetry/" in err
    assert server.requests[0].endswith("/%E5%85%A8%E5%94%90%E8%AF%97/poet.tang.0.json")


def test_builders_cover_every_registered_corpus() -> None:
    assert set(BUILDERS) == set(registered_sources())


# --------------------------------------------------------------------------- published corpora


@pytest.fixture
def data_dir() -> Path:
    """The published corpora: ``$TEXTGEN_DATA_DIR``, else ``../shared/data`` as every other test reads them."""
    path = Path(os.environ.get(DATA_DIR_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (path / "sources.json").is_file():
        pytest.skip(f"published corpora not found at {path}: set {DATA_DIR_ENV}")
    return path


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def test_packaged_pins_match_the_published_ones(data_dir: Path) -> None:
    packaged = {name: source for name, source in registered_sources().items()}
    published = json.loads(read_text(data_dir / "sources.json"))
    assert set(packaged) == set(published)
    for name, entry in published.items():
        assert packaged[name].build == entry["build"]
        for kind in ("files", "extra_files"):
            assert [(f.path, f.url, f.sha256, f.bytes) for f in getattr(packaged[name], kind)] == [
                (f["path"], f["url"], f["sha256"], f["bytes"]) for f in entry.get(kind, [])
            ]


def test_published_shakespeare_is_the_pinned_file(data_dir: Path) -> None:
    path = data_dir / "shakespeare" / "input.txt"
    (pin,) = get_source("shakespeare").files
    assert sha256_hex(path.read_bytes()) == pin.sha256
    splits = build_shakespeare([path])
    assert (len(splits.train), len(splits.val)) == (1_003_854, 111_540)
    assert splits.train + splits.val == read_text(path)


CJK = "[\u4e00-\u9fff]"
SONGCI_LINE = re.compile("[\u4e00-\u9fff，。、？！；：]+")
TANG_VERSE = re.compile(f"{CJK}{{5}}，{CJK}{{5}}。|{CJK}{{7}}，{CJK}{{7}}。")


def test_published_tang_follows_the_rule(data_dir: Path) -> None:
    seen: set[str] = set()
    for part, buckets in (("train", range(10, 100)), ("val", range(5, 10))):
        text = read_text(data_dir / "tang" / f"{part}.txt")
        assert text.endswith("。\n") and not text.endswith("\n\n")
        for poem in text[:-1].split("\n\n"):
            title, *verses = poem.split("\n")
            body = "\n".join(verses)
            assert title and title == title.strip()
            assert len(verses) in (2, 4) and len({len(v) for v in verses}) == 1
            assert all(TANG_VERSE.fullmatch(v) for v in verses), poem
            assert split_bucket(body) in buckets, poem
            assert body not in seen, f"duplicate body: {poem}"
            seen.add(body)


def test_published_songshi_follows_the_rule(data_dir: Path) -> None:
    tang = "\n".join(read_text(data_dir / "tang" / f"{part}.txt") for part in ("train", "val"))
    tang_bodies = poem_bodies(tang)
    text = read_text(data_dir / "songshi" / "train.txt")
    assert text.endswith("。\n") and not text.endswith("\n\n")
    seen: set[str] = set()
    irregular = 0  # the published file has 15 poems with a verse 1-2 characters short of 5/7
    for poem in text[:-1].split("\n\n"):
        title, *verses = poem.split("\n")
        body = "\n".join(verses)
        assert title and len(verses) in (2, 4), poem
        irregular += not all(TANG_VERSE.fullmatch(v) for v in verses)
        assert split_bucket(body) >= 5 and body not in tang_bodies and body not in seen, poem
        seen.add(body)
    assert len(seen) == 176_937 and irregular <= 15


def test_published_songci_follows_the_rule(data_dir: Path) -> None:
    seen: set[str] = set()
    counts = {}
    for part, buckets in (("train", range(10, 100)), ("val", range(5, 10))):
        text = read_text(data_dir / "songci" / f"{part}.txt")
        assert text.endswith("。\n") and not text.endswith("\n\n")
        blocks = text[:-1].split("\n\n")
        counts[part] = len(blocks)
        for block in blocks:
            tune, *lines = block.split("\n")
            body = "\n".join(lines)
            assert SONGCI_LINE.fullmatch(tune) and lines and all(SONGCI_LINE.fullmatch(line) for line in lines), block
            assert split_bucket(body) in buckets and body not in seen, block
            seen.add(body)
    assert counts == {"train": 15_803, "val": 856}


def test_published_stacks_bibliography_is_the_pinned_file(data_dir: Path) -> None:
    (pin,) = [f for f in get_source("stacks").extra_files if f.path == "my.bib"]
    assert sha256_hex((data_dir / "stacks" / "my.bib").read_bytes()) == pin.sha256


def test_published_stacks_replays_exactly(data_dir: Path, tmp_path: Path) -> None:
    """Cut the published text into chapters, check each against its pin, then rerun the rule.

    Chapters absent from both files (reserved, or over budget) are replaced by stand-ins of
    their pinned size: the budget decisions are then the real ones, and the output must equal the
    published files byte for byte.
    """
    source = get_source("stacks")
    by_sha = {f.sha256: f for f in source.files}
    marker = "\\input{preamble}"
    published = {part: read_text(data_dir / "stacks" / f"{part}.txt") for part in ("train", "val")}
    chapters: dict[str, str] = {}
    for text in published.values():
        assert text.startswith(marker)
        for index, chunk in enumerate(text.split("\n" + marker)):
            chapter = chunk if index == 0 else marker + chunk
            digest = sha256_hex(chapter.encode())
            assert digest in by_sha, f"chapter {chapter[:80]!r} is not a whole pinned file"
            chapters[by_sha[digest].path] = chapter
    paths = write_files(
        tmp_path,
        {
            f.path: chapters[f.path].encode() if f.path in chapters else b"%" * f.bytes
            for f in source.files
        },
    )
    splits = build_stacks(paths)
    assert (splits.train, splits.val) == (published["train"], published["val"])
