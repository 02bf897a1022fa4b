"""Many scans with one model, rerunning only what is stale, the local GPU cap, the report.

One temporary copy of the repository with three tiny scans a, b, c, all reconstructed
by the model trained on a (config/config.yaml lists them, so plain `snakemake` builds
them). After one real run each row of the matrix makes one change, asks Snakemake
which jobs it would run now (the dry-run's job table) and undoes the change.
"""

import hashlib
import re
from datetime import datetime
from dataclasses import replace

import numpy as np
import pytest
import yaml

from conftest import TINY
from ptycho_lib.io import write_npz
from ptycho_lib.simulate import simulate
from helpers import TINY_CONFIG, copy_repo, planned_jobs, snakemake

SCANS = ("a", "b", "c")
EVERYTHING = {"validate": 3, "transpose": 3, "train": 1, "export": 1, "recon": 3, "render": 3, "product": 3,
              "loss_curve": 1}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = copy_repo(tmp_path_factory.mktemp("scans"))
    write_npz(work / "resources/a.npz", simulate(TINY))
    write_npz(work / "resources/b.npz", simulate(replace(TINY, seed=4, object_seed=11)))
    # c: a larger scan, uncompressed, over Snakemake's default checksum limit (1 MB)
    np.savez(work / "resources/c.npz", **simulate(replace(TINY, rows=24, cols=24, seed=5, object_seed=12)))
    assert (work / "resources/c.npz").stat().st_size > 1_200_000
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    config["datasets"] = {"a": None, "b": {"model": "a"}, "c": {"model": "a"}}
    config = {**config, **{k: {**config[k], **v} for k, v in TINY_CONFIG.items()}}
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    raw = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (work / "resources").iterdir()}
    run = stdout(snakemake(work, "--cores", "2"))  # rule all: every listed scan
    assert planned_jobs(run) == {**EVERYTHING, "all": 1} and run.count("Finished jobid") == 19
    assert sorted(p.name for p in (work / "results/train").iterdir()) == ["a"]  # trained once
    for name in SCANS:
        assert (work / f"results/recon/{name}.png").read_bytes()[:4] == b"\x89PNG"
    # No rule writes under resources/: the raw files are untouched, none added.
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (work / "resources").iterdir()} == raw
    return work


def stdout(proc):
    return proc.stdout + proc.stderr


def would_run(work, *args) -> dict[str, int]:
    out = stdout(snakemake(work, "-n", *args))
    if "Nothing to be done" in out:
        return {}
    return {rule: n for rule, n in planned_jobs(out).items() if rule != "all"}


def edit(path, text):
    """Change a file's content; returns a callable that restores it (bytes, not mtime)."""
    old = path.read_bytes()
    path.write_bytes(old + text.encode()) if isinstance(text, str) else path.write_bytes(text)
    return lambda: path.write_bytes(old)


def test_one_model_trained_once_reconstructs_every_listed_scan(built):
    recons = {n: hashlib.sha256((built / f"results/recon/{n}.npz").read_bytes()).hexdigest() for n in SCANS}
    assert len(set(recons.values())) == 3  # three different scans, three different images


@pytest.mark.parametrize("change, expected", [
    ("nothing", {}),
    ("infer setting", {"recon": 3, "render": 3, "product": 3}),
    ("render setting", {"render": 3, "loss_curve": 1}),
    ("training setting", {"train": 1, "export": 1, "recon": 3, "render": 3, "product": 3, "loss_curve": 1}),
    ("physics module edit", {"train": 1, "export": 1, "recon": 3, "render": 3, "product": 3, "loss_curve": 1}),
    ("stitching module edit", {"recon": 3, "render": 3, "product": 3}),
    ("render script edit", {"render": 3}),
    ("touch raw file, same content", {}),  # of scan c, 1.5 MB
    ("new raw content, scan b", {"validate": 1, "transpose": 1, "recon": 1, "render": 1, "product": 1}),
    ("new raw content, training scan a", {"validate": 1, "transpose": 1, "train": 1, "export": 1,
                                          "recon": 3, "render": 3, "product": 3, "loss_curve": 1}),
])
def test_only_stale_stages_rerun(built, change, expected, tmp_path):
    undo, args = (lambda: None), []
    settings = {"infer setting": {"infer": {"middle_trim": 2}}, "render setting": {"render": {"dpi": 60}},
                "training setting": {"train": {"learning_rate": 0.002}}}
    files = {"physics module edit": "ptycho_lib/physics.py", "stitching module edit": "ptycho_lib/stitch.py",
             "render script edit": "scripts/render.py"}
    if change in settings:
        (tmp_path / "change.yaml").write_text(yaml.safe_dump(settings[change]))
        args = ["--configfile", str(tmp_path / "change.yaml")]
    elif change in files:
        undo = edit(built / files[change], "\n# an edit\n")
    elif change.startswith("touch"):
        (built / "resources/c.npz").touch()
    elif change.startswith("new raw"):
        undo = edit(built / f"resources/{change[-1]}.npz", (built / "resources/c.npz").read_bytes())
    try:
        assert would_run(built, *args) == expected
    finally:
        undo()
    if change in files or change.startswith("new raw"):  # the old content again, with a new mtime
        assert would_run(built) == {}


def test_a_rerun_replaces_only_what_the_plan_named(built, tmp_path):
    """The plan is what happens: a new stitch setting rewrites scan b's reconstruction
    and PNG, and leaves its validated, canonical and trained files as they were."""
    before = {p: p.stat().st_mtime_ns for p in (built / "results").rglob("*") if p.is_file()}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"infer": {"stitch": "bilinear"}}))
    snakemake(built, "results/recon/b.png", "--cores", "2", "--configfile", str(tmp_path / "c.yaml"))
    changed = sorted(str(p.relative_to(built)) for p, t in before.items() if p.stat().st_mtime_ns != t)
    assert changed == ["results/recon/b.npz", "results/recon/b.npz.prov.json", "results/recon/b.png",
                       "results/recon/b.png.prov.json"]
    assert would_run(built, "results/recon/b.png", "--configfile", str(tmp_path / "c.yaml")) == {}


def job_events(out: str, rule: str) -> list[tuple[str, datetime]]:
    """('start'|'end', time) of every job of `rule`, in the order Snakemake logged them."""
    events, when = [], None
    for line in out.splitlines():
        if m := re.match(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", line):
            when = datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y")
        elif re.match(rf"^(local)?rule {rule}:$", line):
            events.append(("start", when))
        elif re.match(rf"^Finished jobid: \d+ \(Rule: {rule}\)$", line):
            events.append(("end", when))
    return events


def test_gpu_jobs_run_one_at_a_time_under_a_gpu_cap_of_one(built):
    """Two reconstructions marked gpu=1 with cores for both: under --resources gpu=1 the
    second starts only after the first ended (with gpu=2 both start at once)."""
    out = stdout(snakemake(built, "results/recon/a.npz", "results/recon/b.npz", "--forcerun", "recon",
                           "--cores", "4", "--set-threads", "recon=1", "--set-resources", "recon:gpu=1",
                           "--resources", "gpu=1"))
    events = job_events(out, "recon")
    assert [kind for kind, _ in events] == ["start", "end", "start", "end"], events
    assert events[1][1] <= events[2][1], events  # second start at or after first end


def test_report_shows_each_scan_with_its_model(built):
    snakemake(built, "--report", "report.html")
    html = (built / "report.html").read_text()
    for name in SCANS:
        assert f"{name}.png" in html
        assert f"Scan {name} reconstructed by the network, model a" in html
    assert html.count("metrics.csv") >= 1
    assert "loss.png" in html and "Loss curve of model a" in html
