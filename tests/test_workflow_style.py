"""The workflow is lint-clean, snakefmt-formatted, and every profile plans a run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from helpers import copy_repo, planned_jobs, snakemake

STAGES = {"validate": 1, "transpose": 1, "train": 1, "export": 1, "recon": 1, "render": 1}


def test_snakemake_lint_is_clean(tmp_path):
    proc = snakemake(copy_repo(tmp_path), "--lint", check=False)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_snakefmt_leaves_the_workflow_unchanged():
    snakefmt = Path(sys.executable).parent / "snakefmt"
    proc = subprocess.run([str(snakefmt), "--check", "workflow/"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONUTF8": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_every_profile_plans_the_six_stages(tmp_path, profile):
    proc = snakemake(copy_repo(tmp_path), "-n", "results/recon/fly001.png", "--workflow-profile", profile)
    assert f"workflow/profiles/{profile}" in proc.stderr
    assert planned_jobs(proc.stdout + proc.stderr) == STAGES
