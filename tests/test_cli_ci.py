"""``python -m textgen.sample ... form=ci tune=浣溪沙``: a ci to a tune from the script, as a user runs it
(the shipped tang-gru, which reads the tune line as any first line; the ci model is trained apart)."""

from __future__ import annotations

import re

from ci_rules import ci_problems
from conftest import REPO, cli, corpus_file

CHECKPOINT = f"checkpoint={REPO / 'checkpoints' / 'tang-gru'}"
FAST = ("quantize=none", "encoder_runtime=torch", "decode_step=torch")  # no timing of the runtimes at load


def test_the_script_writes_a_ci_to_its_tune():
    done = cli("sample", CHECKPOINT, "form=ci", "tune=浣溪沙", "seed=1", *FAST)
    assert done.stdout.startswith("浣溪沙\n")
    assert ci_problems(done.stdout[len("浣溪沙\n"):].rstrip("\n"), "浣溪沙", corpus_file("songci")) == [], done.stdout
    assert "finish: form_complete" in done.stderr
    done = cli("sample", CHECKPOINT, "form=ci", "tune=水调歌头", "variant=1", "title=中秋", "n=2", "seed=3", *FAST)
    cis = re.findall(r"---\n水调歌头\n中秋\n(.*?)\n(?=---|$)", done.stdout + "---", re.S)
    assert len(cis) == 2 and all(ci_problems(c, "水调歌头", corpus_file("songci"), variant=1) == [] for c in cis), \
        done.stdout


def test_the_script_names_what_is_wrong_with_a_ci():  # an unknown tune: tests/test_ci_form.py
    done = cli("sample", CHECKPOINT, "form=ci", *FAST, check=False)
    assert done.returncode == 2 and "form.tune" in done.stderr and "required" in done.stderr
    done = cli("sample", CHECKPOINT, "form=ci", "tune=浣溪沙", "variant=7", *FAST, check=False)
    assert done.returncode == 2 and "form.variant" in done.stderr
