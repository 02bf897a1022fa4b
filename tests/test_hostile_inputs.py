"""Untrusted files stay inside their bounds. Every case of the hostile corpus, through the
real program that must refuse it, in 1 GiB of address space: exit 1, exactly one line
naming the file, no output, no hang. Then what a file may legitimately link to (the
data files of a detector master file in its own folder) is read, pinned and rerun on
change; and the trainer is one per folder, stops when its Snakemake dies, and resumes
only the same code."""

import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from beamline_files import padded_counts, write_cxi
from conftest import REPO
from helpers import copy_repo, snakemake
from hostile_inputs import CASES, write_case

MEMORY = 1 << 30  # address space of each program run: nothing may allocate what a file declares
SECONDS = 60  # hang guard (what the manifest cases provoke); a refusal takes ~5 s, most of it importing torch


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run(script, *args, timeout=SECONDS, cwd=REPO):
    return subprocess.run([sys.executable, "-m", f"scripts.{script}", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, preexec_fn=_limit_memory, timeout=timeout)


def test_the_corpus_covers_the_findings():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_is_refused_in_one_line_within_bounds(tiny_raw, tmp_path, name):
    case = write_case(name, tiny_raw, tmp_path)
    proc = run(case.script, *case.args)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {case.subject}: "), proc.stderr
    assert case.message in lines[0], lines[0]
    assert list((tmp_path / "out").iterdir()) == []  # neither the output nor a temporary file


# --- what a file may link to: its own folder ----------------------------------------

DATA = "entry_1/data_1/data"


def _master_and_data(folder: Path, raw) -> Path:
    """A master file whose frames are in data_000001.h5 beside it (an external link), as
    Eiger/NeXus writers lay them out."""
    counts = padded_counts(raw)[0]
    with h5py.File(folder / "data_000001.h5", "w") as f:
        f["data"] = counts
    master = write_cxi(folder / "scan_master.cxi", raw)
    with h5py.File(master, "a") as f:
        del f[DATA]
        f[DATA] = h5py.ExternalLink("data_000001.h5", "/data")
    return master


def test_a_master_file_reads_its_data_files_in_its_folder(tiny_raw, tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "eiger").mkdir()
    plain = write_cxi(tmp_path / "plain" / "scan.cxi", tiny_raw)
    master = _master_and_data(tmp_path / "eiger", tiny_raw)
    for source in (plain, master):
        assert run("convert", source, tmp_path / f"{source.parent.name}.npz").returncode == 0
    with np.load(tmp_path / "plain.npz") as a, np.load(tmp_path / "eiger.npz") as b:
        np.testing.assert_array_equal(a["diffraction"], b["diffraction"])
        assert json.loads(str(b["import_notes"]))["files"] == ["scan_master.cxi", "data_000001.h5"]


def test_a_virtual_dataset_over_files_in_the_folder_is_read(tiny_raw, tmp_path):
    counts = padded_counts(tiny_raw)[0]
    half = len(counts) // 2
    for i, part in enumerate((counts[:half], counts[half:])):
        with h5py.File(tmp_path / f"frames_{i}.h5", "w") as f:
            f["frames"] = part
    master = write_cxi(tmp_path / "scan.cxi", tiny_raw)
    with h5py.File(master, "a") as f:
        layout = h5py.VirtualLayout(counts.shape, counts.dtype)
        layout[:half] = h5py.VirtualSource("frames_0.h5", "frames", (half, *counts.shape[1:]))
        layout[half:] = h5py.VirtualSource("frames_1.h5", "frames", (len(counts) - half, *counts.shape[1:]))
        del f[DATA]
        f.create_virtual_dataset(DATA, layout)
    other = tmp_path.parent / "elsewhere"  # relative sources resolve in the file's folder, not the working one
    other.mkdir(exist_ok=True)
    proc = run("convert", master, tmp_path / "v.npz", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    reference = write_cxi(other / "plain.cxi", tiny_raw)
    assert run("convert", reference, other / "plain.npz").returncode == 0
    with np.load(tmp_path / "v.npz") as a, np.load(other / "plain.npz") as b:
        np.testing.assert_array_equal(a["diffraction"], b["diffraction"])


def test_an_edited_data_file_reruns_convert_and_the_pin_catches_it(tiny_raw, tmp_path):
    """Snakemake sees the master's data files as inputs; the sha256 pin covers them (the
    documented value: SHA-256 of the sorted lines `<sha256>  <name>` of the files read)."""
    work = copy_repo(tmp_path / "repo")
    folder = work / "resources" / "eiger"
    folder.mkdir()
    _master_and_data(folder, tiny_raw)
    lines = sorted(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in folder.iterdir())
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    cfg = work / "eiger.yaml"
    cfg.write_text(f"datasets:\n  eiger: {{path: resources/eiger/scan_master.cxi, sha256: '{digest}'}}\n")
    target = "results/imported/eiger.npz"
    snakemake(work, target, "--cores", "1", "--configfile", str(cfg))
    assert "convert" not in snakemake(work, target, "-n", "--configfile", str(cfg)).stdout
    with h5py.File(folder / "data_000001.h5", "a") as f:  # a file other than the master changes
        f["data"][0, 10, 10] += 7
    assert "convert" in snakemake(work, target, "-n", "--configfile", str(cfg)).stdout  # Snakemake saw it
    proc = snakemake(work, target, "--cores", "1", "--configfile", str(cfg), check=False)
    assert proc.returncode != 0 and not (work / target).exists()
    log = (work / "logs/convert/eiger.log").read_text().strip().splitlines()
    assert len(log) == 1 and "SHA-256 (of the files it reads)" in log[0] and f"expected {digest}" in log[0]


def test_a_file_linking_outside_its_folder_never_reaches_results(tiny_raw, tmp_path):
    """Through the workflow: refused at convert, and still refused after the outside
    file changes (the pin cannot be defeated by editing it: it is never read)."""
    work = copy_repo(tmp_path / "repo")
    case = write_case("entry_group_linked_to_another_file", tiny_raw, work / "resources" / "linked")
    cfg = work / "linked.yaml"
    cfg.write_text(f"datasets:\n  linked: {{path: {case.subject.relative_to(work)}}}\n")
    for attempt in range(2):
        proc = snakemake(work, "results/canonical/linked.npz", "--cores", "1", "--configfile", str(cfg), check=False)
        assert proc.returncode != 0
        log = (work / "logs/convert/linked.log").read_text().strip().splitlines()
        assert len(log) == 1 and "outside the folder" in log[0]
        assert not (work / "results/imported").exists() or list((work / "results/imported").iterdir()) == []
        write_cxi(work / "resources/linked/outside/other.cxi", {**tiny_raw, "diff3d": tiny_raw["diff3d"] * 2})
