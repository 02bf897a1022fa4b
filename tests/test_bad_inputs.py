"""Every file of the bad-input corpus, through the real validate and transpose programs
and through one Snakemake run: a non-zero exit, one line naming the file and the
problem, and no output. Unusual positions warn and go through."""

import json
import resource
import subprocess
import sys

import pytest

from bad_inputs import CASES, WARN, write_case
from conftest import REPO, save_npz
from ptycho_lib.io import InputError, read_npz
from helpers import copy_repo, snakemake

ADDRESS_SPACE = 768 << 20  # the programs run in this much memory: nothing may allocate the claimed sizes


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_stage(script, raw, out, *extra):
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), str(raw), str(out), *extra],
                          capture_output=True, text=True, preexec_fn=_limit_memory, timeout=120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_raw):
    d = tmp_path_factory.mktemp("corpus")
    return {name: write_case(name, tiny_raw, d) for name in [*CASES, *WARN]}


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 20 and len(WARN) >= 2


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("script", ["validate.py", "transpose.py"])
def test_bad_file_fails_with_one_line_and_no_output(corpus, tmp_path, script, case):
    raw = corpus[case]
    out = tmp_path / ("report.json" if script == "validate.py" else "canonical.npz")
    proc = run_stage(script, raw, out)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {raw}: {lines[0].split(': ', 2)[2]}"], proc.stderr
    assert CASES[case][1] in lines[0]
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file
    assert not raw.with_name(f"{case}.EXECUTED").exists()  # nothing was unpickled


@pytest.mark.parametrize("case", sorted(WARN))
def test_unusual_positions_warn_and_continue(corpus, tmp_path, case):
    raw = corpus[case]
    report, canonical = tmp_path / "report.json", tmp_path / "canonical.npz"
    for script, out in (("validate.py", report), ("transpose.py", canonical)):
        proc = run_stage(script, raw, out)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"warning: {raw}: ") and WARN[case][1] in lines[0]
        assert out.stat().st_size > 0
    assert any(WARN[case][1] in w for w in json.loads(report.read_text())["warnings"])
    assert read_npz(canonical)["diffraction"].shape == (36, 32, 32)


def test_traceback_only_with_debug(corpus, tmp_path):
    plain = run_stage("validate.py", corpus["zip_bomb"], tmp_path / "r.json")
    debug = run_stage("validate.py", corpus["zip_bomb"], tmp_path / "r.json", "--debug")
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr
    assert debug.returncode == 1 and debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def test_a_file_larger_than_the_memory_available_is_refused_unread(tiny_raw, tmp_path):
    path = save_npz(tmp_path / "scan.npz", tiny_raw)
    with pytest.raises(InputError, match=r"needs 151.5 kB of memory to load, more than the 10.0 kB available"):
        read_npz(path, max_bytes=10_000)
    assert read_npz(path, max_bytes=None).keys() == tiny_raw.keys()
    # the float64 copies that checking and converting make count too (uint16 counts: 1 + 4 x 4 times the bytes)
    assert read_npz(path, max_bytes=500_000).keys() == tiny_raw.keys()
    with pytest.raises(InputError, match=r"needs 1.6 MB of memory to load, more than the 500.0 kB available"):
        read_npz(path, max_bytes=500_000, copies=4)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, tiny_raw):
    """One Snakemake run over the whole corpus (--keep-going), asking for canonical files."""
    work = copy_repo(tmp_path_factory.mktemp("repo"))
    for name in [*CASES, *WARN]:
        write_case(name, tiny_raw, work / "resources")
    targets = [f"results/canonical/{name}.npz" for name in [*CASES, *WARN]]
    proc = snakemake(work, *targets, "--cores", "2", "--keep-going", check=False)
    return work, proc


@pytest.mark.parametrize("case", sorted(CASES))
def test_snakemake_stops_each_bad_file_without_a_partial_target(corpus_run, case):
    work, proc = corpus_run
    assert proc.returncode != 0
    log = (work / f"logs/validate/{case}.log").read_text().strip().splitlines()
    assert len(log) == 1 and log[0].startswith(f"error: resources/{case}.npz: ") and CASES[case][1] in log[0]
    assert not (work / f"results/validated/{case}.json").exists()
    assert not (work / f"results/canonical/{case}.npz").exists()
    assert [p.name for p in (work / "results/validated").iterdir() if case in p.name] == []
    assert not (work / f"resources/{case}.EXECUTED").exists()


@pytest.mark.parametrize("case", sorted(WARN))
def test_snakemake_carries_unusual_positions_through(corpus_run, case):
    work, _ = corpus_run
    assert read_npz(work / f"results/canonical/{case}.npz")["diffraction"].shape == (36, 32, 32)
    for rule in ("validate", "transpose"):
        assert WARN[case][1] in (work / f"logs/{rule}/{case}.log").read_text()
