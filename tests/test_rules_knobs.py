"""The rules and the command lines agree: the rules pass every knob, a hand-run of the
programs with the same settings reproduces the rules' files byte for byte, and a
changed knob reruns exactly the stages that use it."""

import filecmp
import subprocess
import sys

import pytest
import yaml

from conftest import TINY
from ptycho_lib import config
from ptycho_lib.io import write_npz
from ptycho_lib.simulate import simulate
from helpers import copy_repo, planned_jobs, snakemake

KNOBS = {  # tiny, and away from the defaults wherever that is cheap
    "data": {"n_groups": 16},
    "model": {"width": 8},
    "train": {"max_epochs": 3, "batch_size": 4, "accumulate_grad_batches": 2, "seed": 3, "learning_rate": 0.002,
              "checkpoint_save_top_k": 2, "early_stop_patience": 5, "logger": "none", "scheduler": "step",
              "scheduler_step_size": 1, "scheduler_gamma": 0.7},
    "infer": {"batch_size": 8, "middle_trim": 2, "n_images": 30},
    "execution": {"threads": 1},  # see tests/knobs.py
    "render": {"positions": True, "phase_limit": 1.0},
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = copy_repo(tmp_path_factory.mktemp("repo"))
    write_npz(work / "resources/tiny.npz", simulate(TINY))
    (work / "knobs.yaml").write_text(yaml.safe_dump(KNOBS))
    snakemake(work, "results/recon/tiny.png", "--cores", "2", "--configfile", "knobs.yaml")
    return work


def _shell_command(output: str, script: str) -> list[str]:
    line = next(line for line in output.splitlines() if f"python -m scripts.{script} " in line)
    return line.split()


def _flags_of(program, sections):
    return {config.flag(f) for s in sections for f in config.fields(s, program)}


def test_rules_pass_every_knob_of_their_programs(workdir):
    (workdir / "changed.yaml").write_text(yaml.safe_dump({**KNOBS, "data": {"n_groups": 17}}))
    out = snakemake(workdir, "-n", "-p", "results/recon/tiny.png", "--configfile", "changed.yaml")
    text = out.stdout + out.stderr
    for script, sections in (("train", ("data", "model", "train", "execution")), ("infer", ("infer", "execution")),
                             ("render", ("render",))):
        words = _shell_command(text, script)
        given = {w.replace("--no-", "--") for w in words if w.startswith("--")}
        missing = _flags_of(script, sections) - given - {"--persistent-workers"}  # null: the default
        assert not missing, (script, missing)


def test_hand_run_reproduces_the_rules_byte_for_byte(workdir):
    hand = workdir / "hand"
    common = ["--config", "config/config.yaml", "--config", "knobs.yaml", "--threads", "1", "--quiet"]
    for argv in (
        ["-m", "scripts.train", "--train-data-file", "results/canonical/tiny.npz", "--output-dir", "hand/train", *common],
        ["-m", "scripts.export", "hand/train/best.ckpt", "hand/models/wts.h5.zip"],
        ["-m", "scripts.infer", "--model-path", "hand/models/wts.h5.zip", "--test-data", "results/canonical/tiny.npz",
         "--output-dir", "hand/recon", *common],
    ):
        proc = subprocess.run([sys.executable, *argv], cwd=workdir, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert filecmp.cmp(hand / "models/wts.h5.zip", workdir / "results/models/tiny/wts.h5.zip", shallow=False)
    assert filecmp.cmp(hand / "recon/tiny.npz", workdir / "results/recon/tiny.npz", shallow=False)
    assert filecmp.cmp(hand / "train/metrics.csv", workdir / "results/train/tiny/metrics.csv", shallow=False)
    kept = sorted(p.name for p in (workdir / "results/train/tiny/checkpoints").glob("*.ckpt"))
    assert len(kept) == 2 and kept == sorted(p.name for p in (hand / "train/checkpoints").glob("*.ckpt"))


@pytest.mark.parametrize("section, key, value, stages", [
    ("train", "scheduler_gamma", 0.5, {"train", "export", "recon", "render"}),
    ("execution", "num_workers", 1, {"train", "recon", "render", "export"}),
    ("infer", "pad_eval", True, {"recon", "render"}),
    ("render", "phase_limit", 2.0, {"render"}),
])
def test_a_changed_knob_reruns_exactly_the_stages_that_use_it(workdir, section, key, value, stages):
    changed = {**KNOBS, section: {**KNOBS.get(section, {}), key: value}}
    (workdir / "changed.yaml").write_text(yaml.safe_dump(changed))
    out = snakemake(workdir, "-n", "results/recon/tiny.png", "--configfile", "changed.yaml")
    assert set(planned_jobs(out.stdout + out.stderr)) == stages


def test_every_key_of_config_yaml_is_a_declared_setting():
    """config/config.yaml sets declared settings only (a key it leaves out takes its
    declared default, which the schema hands to Snakemake)."""
    from conftest import REPO
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for name in config.SECTIONS:
        keys = {f.name for f in config.fields(name) if f.metadata["config"]}
        given = set(cfg["dataset_defaults" if name == "dataset" else name])
        assert given <= keys, (name, given - keys)
