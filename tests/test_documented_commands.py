"""Every command the user-facing docs show runs as shown: Snakemake commands as a dry
run (their full runs are the pipeline tests'), the programs for real, from a checkout
without results (so they stop at their first missing input, having accepted every
flag). Install lines are what CI's own setup runs; placeholders (NAME, ...) are not
commands."""

import contextlib
import importlib
import io
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import yaml

from beamline_files import write_cxi
from conftest import REPO
from helpers import copy_repo, snakemake
from ptycho_lib.cli import run

DOCS = ("README.md", "config/README.md", "docs/cli.md", "docs/usage.md")
COMMAND = re.compile(r"(snakemake|python -m) ")
FRAGMENT = re.compile(r"\bNAME\b|\.\.\.|^pip install|^python3 -m venv|^\. \.venv")  # not commands to run


def documented_commands(path: Path) -> list[str]:
    """Command lines of the file's shell blocks and inline code spans."""
    out, block, lines = [], None, path.read_text().splitlines()
    for line in lines:
        if line.strip().startswith("```"):
            block = None if block is not None else line.strip()[3:]
            continue
        if block in ("bash", "sh", ""):
            out.append(line.strip())
    text = re.sub(r"(?ms)^\s*```.*?^\s*```", "", path.read_text())
    out += re.findall(r"`([^`\n]+)`", text)
    joined = re.sub(r"\\\n\s*", " ", "\n".join(out))
    # a line of setup steps joined by && holds commands too (the README's two)
    steps = [step.strip() for line in joined.splitlines() for step in line.split(" && ")]
    return [c for c in steps if COMMAND.match(c) or re.match(r"pip install|python3 -m venv|\. \.venv", c)]


def runnable(command: str) -> list[list[str]]:
    """The argument lists a command stands for: its comment and [optional] parts
    dropped, TARGET made the fixture's target, {a,b} paths expanded as a shell would."""
    command = re.sub(r"\s+#.*$", "", command)
    command = re.sub(r"\[[^\]]*\]", "", command).replace("TARGET", "results/recon/fly001.png")
    words = []
    for word in shlex.split(command):
        parts = re.split(r"\{([\w,]+)\}", word) if "/" in word else [word]
        choices = [p.split(",") if i % 2 else [p] for i, p in enumerate(parts)]
        words.append(["".join(c) for c in product(*choices)])
    return [[w for group in words for w in group]]


ALL = [(doc, c) for doc in DOCS for c in documented_commands(REPO / doc)]


def test_the_docs_show_commands_and_only_placeholders_are_skipped():
    assert len(ALL) > 30
    skipped = [c for _, c in ALL if FRAGMENT.search(c)]
    assert all(re.match(r"pip install|python3 -m venv|\. \.venv|python -m scripts\.(NAME|train \.\.\. )", c)
               for c in skipped), skipped


def fresh_checkout(folder: Path, raw) -> Path:
    """A checkout with the scans the docs' examples name, and docs/usage.md's example
    configuration of a, b and c (one model, trained on a)."""
    work = copy_repo(folder)
    write_cxi(work / "resources/myscan.cxi", raw)
    for name in ("a", "b", "c"):
        np.savez(work / f"resources/{name}.npz", **raw)
    settings = yaml.safe_load((work / "config/config.yaml").read_text())
    settings["datasets"].update({"a": None, "b": {"model": "a"}, "c": {"model": "a"}})
    (work / "config/config.yaml").write_text(yaml.safe_dump(settings))
    return work


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, tiny_raw):
    """Where the Snakemake commands run (what a report needs is built there once)."""
    return fresh_checkout(tmp_path_factory.mktemp("workflow"), tiny_raw)


@pytest.fixture(scope="module")
def bare(tmp_path_factory, tiny_raw):
    """Where the programs run, each from a checkout without results."""
    return fresh_checkout(tmp_path_factory.mktemp("programs"), tiny_raw)


def run_program(work: Path, argv: list[str], monkeypatch) -> tuple[int, str]:
    """`python -m MODULE ARGS` in this process (the import is paid once): the exit code
    and what it wrote to stderr."""
    if argv[2] == "ptycho_lib.config_docs":  # writes the docs of the checkout it runs in
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=work, capture_output=True, text=True)
        return proc.returncode, proc.stderr
    module = importlib.import_module(argv[2])
    err = io.StringIO()
    monkeypatch.chdir(work)
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            run(module.main, argv[3:])
        except SystemExit as e:
            code = e.code or 0
    shutil.rmtree(work / "results", ignore_errors=True)  # every program starts from a checkout without results
    return code, err.getvalue()


def snakemake_args(argv: list[str]) -> list[str]:
    """A documented Snakemake command's arguments as the test runs them: a dry run,
    except for a report (of targets built beforehand) and --unlock."""
    args = argv[1:]
    return args if {"--report", "--unlock", "-n"} & set(args) else ["-n", *args]


SNAKEMAKE = [snakemake_args(argv) for _, c in ALL if not FRAGMENT.search(c)
             for argv in runnable(c) if argv[0] == "snakemake"]


@pytest.fixture(scope="module")
def snakemake_runs(checkout) -> dict[tuple, subprocess.CompletedProcess]:
    """Every documented Snakemake command's run: the targets of the reports built first
    (in one short run), the dry runs two at a time, the rest one by one."""
    reported = {a for args in SNAKEMAKE if "--report" in args for a in args if a.startswith("results/")}
    snakemake(checkout, *sorted(reported), "--cores", "2", "--config", "train={max_epochs: 1}",
              "solver={iterations: 2, refine_iterations: 2}")
    dry = [args for args in SNAKEMAKE if args[0] == "-n" or "-n" in args]
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(map(tuple, dry), pool.map(lambda a: snakemake(checkout, *a, check=False), dry)))
    for args in SNAKEMAKE:
        if tuple(args) not in runs:
            runs[tuple(args)] = snakemake(checkout, *args, check=False)
    return runs


@pytest.mark.parametrize("doc, command", [p for p in ALL if not FRAGMENT.search(p[1])],
                         ids=[f"{d}: {c[:60]}" for d, c in ALL if not FRAGMENT.search(c)])
def test_a_documented_command_runs_as_shown(snakemake_runs, bare, doc, command, monkeypatch):
    for argv in runnable(command):
        if argv[0] == "snakemake":
            proc = snakemake_runs[tuple(snakemake_args(argv))]
            assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
        else:
            code, err = run_program(bare, argv, monkeypatch)
            lines = err.strip().splitlines()
            # accepted: it ran, or it stopped at a missing input with the one-line error
            assert code == 0 or (code == 1 and lines[-1].startswith("error: ")), (command, code, err[-2000:])
