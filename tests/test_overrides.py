"""Settings changed on Snakemake's command line reach the stages, typed: Snakemake hands
nested `--config` values over as text ('40', 'true'), which the workflow reads by each
setting's declared type (config.typed_overrides); what does not read as that type is
still refused by the schema. Each case is a form config/README.md documents."""

import pytest

from helpers import copy_repo, snakemake


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return copy_repo(tmp_path_factory.mktemp("overrides"))


def planned_commands(repo, *args) -> str:
    out = snakemake(repo, "-n", "-p", "results/metrics/fly001.json", "results/recon/fly001.png",
                    "results/train/fly001/loss.png", *args)
    return out.stdout + out.stderr


@pytest.mark.parametrize("override, command, flag", [
    ("train={max_epochs: 40}", "scripts.train", "--max-epochs 40 "),
    ("train={learning_rate: 2e-3, deterministic: false}", "scripts.train", "--learning-rate 0.002 "),
    ("train={learning_rate: 2e-3, deterministic: false}", "scripts.train", "--no-deterministic "),
    ("render={dpi: 200}", "scripts.render", "--dpi 200 "),
    ("solver={pulls: [4, 1]}", "scripts.solve refined", "--pulls 4.0 1.0 "),
    ("datasets={fly001: {layout: stack_first}}", "scripts.validate", "--layout stack_first "),
    ("dataset_defaults={nphotons: 2e5}", "scripts.transpose", "--nphotons 200000.0 "),
])
def test_a_config_override_reaches_its_stage(repo, override, command, flag):
    lines = [line for line in planned_commands(repo, "--config", override).splitlines()
             if f"python -m {command}" in line]
    assert lines and all(flag in line for line in lines), (override, lines)
    # and without it the stage runs with the file's value
    default = [line for line in planned_commands(repo).splitlines() if f"python -m {command}" in line]
    assert default and not any(flag in line for line in default)


def test_an_override_of_the_wrong_type_is_refused(repo):
    out = snakemake(repo, "-n", "results/recon/fly001.png", "--config", "train={max_epochs: forty}", check=False)
    assert out.returncode != 0 and "max_epochs" in out.stdout + out.stderr
