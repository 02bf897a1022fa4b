"""Same inputs, same bytes: two fresh runs of the tiny pipeline in two temporary copies
of the repository, one of them among ten scans run concurrently; every output
carries a provenance sidecar."""

import hashlib
import json
import os
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, TINY
from ptycho_lib import __version__
from ptycho_lib.io import read_npz, write_npz
from ptycho_lib.provenance import git_commit
from ptycho_lib.simulate import simulate
from helpers import copy_repo, snakemake

MICRO_CONFIG = {  # the smallest run that still goes through every stage
    "data": {"n_groups": 16},
    "model": {"width": 8},
    "train": {"max_epochs": 2, "batch_size": 8},
    "infer": {"batch_size": 16},
    "execution": {"threads": 1, "accelerator": "cpu"},
}
# ten scans: 'tiny' and a twin of it, and four more pairs of twins
TWINS = {"tiny": "twin", "s1a": "s1b", "s2a": "s2b", "s3a": "s3b", "s4a": "s4b"}
OUTPUTS = ["results/validated/{d}.json", "results/canonical/{d}.npz", "results/train/{d}/last.ckpt",
           "results/train/{d}/best.ckpt",
           "results/models/{d}/wts.h5.zip", "results/recon/{d}.npz", "results/recon/{d}.png"]


def _prepare(work: Path, scans: dict) -> Path:
    for name, arrays in scans.items():
        write_npz(work / f"resources/{name}.npz", arrays)
    (work / "micro.yaml").write_text(yaml.safe_dump(MICRO_CONFIG))
    return work


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    work = _prepare(copy_repo(tmp_path_factory.mktemp("serial")), {"tiny": simulate(TINY)})
    snakemake(work, "results/recon/tiny.png", "--cores", "2", "--configfile", "micro.yaml")
    return work


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    work = copy_repo(tmp_path_factory.mktemp("parallel"))
    scans = {}
    for i, (a, b) in enumerate(TWINS.items()):
        scans[a] = scans[b] = simulate(replace(TINY, seed=TINY.seed + i, object_seed=TINY.object_seed + i))
    _prepare(work, scans)
    tmp = work.parent / "tmpdir"
    tmp.mkdir()
    os.environ["TMPDIR"], old = str(tmp), os.environ.get("TMPDIR")
    try:
        snakemake(work, *[f"results/recon/{d}.png" for d in scans], "--cores", "8", "--resources", "gpu=1",
                  "--configfile", "micro.yaml")
    finally:
        os.environ.pop("TMPDIR") if old is None else os.environ.update(TMPDIR=old)
    return work, tmp, sorted(scans)


def _weights(bundle: Path) -> bytes:
    with zipfile.ZipFile(bundle) as zf:
        return zf.read("wts.h5")


def test_two_fresh_runs_give_the_same_bytes(serial, parallel):
    other = parallel[0]
    for pattern in OUTPUTS:
        if pattern.endswith(".ckpt"):  # Lightning stores absolute paths in its checkpoints
            continue
        rel = pattern.format(d="tiny")
        assert (serial / rel).read_bytes() == (other / rel).read_bytes(), rel
    assert _weights(serial / "results/models/tiny/wts.h5.zip") == _weights(other / "results/models/tiny/wts.h5.zip")


def test_every_output_records_its_provenance(serial):
    sha = {}
    for pattern in OUTPUTS:
        out = serial / pattern.format(d="tiny")
        prov = json.loads(out.with_name(out.name + ".prov.json").read_text())
        sha[out.name] = prov["output"]["sha256"]
        assert prov["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest(), out
        assert prov["library_version"] == __version__ and "git_commit" in prov  # None: the copy has no .git
        assert "numpy" in prov["packages"] and prov["created_utc"]
        for role, item in prov["inputs"].items():
            assert item["sha256"] == hashlib.sha256((serial / item["path"]).read_bytes()).hexdigest(), role
    raw = json.loads((serial / "results/canonical/tiny.npz.prov.json").read_text())
    assert raw["inputs"]["raw"]["path"] == "resources/tiny.npz" and raw["config"]["layout"] == "auto"
    train = json.loads((serial / "results/train/tiny/last.ckpt.prov.json").read_text())
    assert train["config"]["train"]["max_epochs"] == 2 and train["config"]["model"]["width"] == 8
    recon = json.loads((serial / "results/recon/tiny.npz.prov.json").read_text())
    assert recon["inputs"]["model_bundle"]["sha256"] == sha["wts.h5.zip"]
    weights = _weights(serial / "results/models/tiny/wts.h5.zip")
    assert recon["bundle_weights_sha256"] == hashlib.sha256(weights).hexdigest()


def test_the_git_commit_is_recorded_in_a_checkout():
    commit = git_commit(REPO)
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)


def test_ten_scans_run_concurrently_without_interfering(parallel):
    work, tmp, names = parallel
    for d in names:
        for pattern in OUTPUTS:
            assert (work / pattern.format(d=d)).stat().st_size > 0, pattern.format(d=d)
    # twins agree to the bit, different scans do not: no job read another's files
    objects = {d: read_npz(work / f"results/recon/{d}.npz")["object"] for d in names}
    weights = {d: _weights(work / f"results/models/{d}/wts.h5.zip") for d in names}
    for a, b in TWINS.items():
        assert weights[a] == weights[b] and np.array_equal(objects[a], objects[b]), (a, b)
        assert (work / f"results/canonical/{a}.npz").read_bytes() == (work / f"results/canonical/{b}.npz").read_bytes()
    assert len({weights[a] for a in TWINS}) == len(TWINS)
    # every file under results/ is a declared output, its sidecar, metrics.csv, or inside the
    # training's own checkpoints/ and logs/ folders: no temporary files or scratch directories
    # left behind, nothing written beside another job's target
    expected = {p.format(d=d) for d in names for p in OUTPUTS}
    expected |= {f + ".prov.json" for f in expected} | {f"results/train/{d}/metrics.csv" for d in names}
    own = tuple(f"results/train/{d}/{sub}/" for d in names for sub in ("checkpoints", "logs"))
    found = {str(p.relative_to(work)) for p in (work / "results").rglob("*") if not p.is_dir()}
    found = {f for f in found if not f.startswith(own)}
    assert found == expected, sorted(found ^ expected)
    for d in names:  # the top-k checkpoints the train rule declares
        assert list((work / f"results/train/{d}/checkpoints").glob("*.ckpt"))
    # Snakemake's own marker in a directory output is the only hidden file
    assert [p for p in (work / "results").rglob(".*") if p.name != ".snakemake_timestamp"] == []
    made = {p.name for p in work.iterdir()} - {p.name for p in REPO.iterdir()}
    assert made <= {"results", "logs", "benchmarks", ".snakemake", "micro.yaml"}, made
    # no shared temporary files either (torch itself makes an empty torchinductor cache directory)
    assert [p for p in tmp.rglob("*") if not p.is_dir()] == []
