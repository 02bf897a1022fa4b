"""The setting declarations are the one source: the schema and the documents' tables
written from them are current, and every program's --help and the workflow agree."""

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from conftest import REPO
from ptycho_lib import config, config_docs


def test_schema_and_tables_are_written_from_the_current_declarations():
    for path, text in config_docs.files().items():
        assert path.read_text() == text, f"{path.relative_to(REPO)} is stale: run python -m ptycho_lib.config_docs"


def test_a_changed_declaration_makes_them_stale(monkeypatch):
    field = next(f for f in config.fields("render") if f.name == "dpi")
    monkeypatch.setattr(field, "default", 96)
    stale = [p.relative_to(REPO).as_posix() for p, text in config_docs.files().items() if p.read_text() != text]
    assert stale == ["workflow/schemas/config.schema.yaml", "config/README.md", "docs/cli.md"]


@pytest.mark.parametrize("program", list(config.PROGRAMS))
def test_every_program_has_distinct_flags(program):
    flags = [f for s in config.PROGRAMS[program] for fld in config.fields(s, program)
             for f in (config.flag(fld), *fld.metadata["aliases"])]
    assert len(flags) == len(set(flags)), program


def test_schema_defaults_are_the_declared_defaults():
    schema = yaml.safe_load((REPO / config_docs.SCHEMA).read_text())
    for name in config.SECTIONS:
        props = schema["properties"]["dataset_defaults" if name == "dataset" else name]["properties"]
        for f in config.fields(name):
            if f.metadata["config"]:
                declared = list(f.default) if isinstance(f.default, tuple) else f.default  # YAML has lists
                assert props[f.name]["default"] == declared, (name, f.name)


def test_every_flag_of_every_program_is_in_the_cli_reference():
    """docs/cli.md names every flag that a program's --help lists."""
    doc = (REPO / "docs/cli.md").read_text()

    def help_text(script):  # two programs at a time: each start is mostly importing torch
        return subprocess.run([sys.executable, "-m", f"scripts.{script.stem}", "--help"], cwd=REPO,
                              env={**os.environ, "COLUMNS": "1000"},  # no flag broken at a hyphen
                              capture_output=True, text=True, check=True).stdout

    scripts = [s for s in sorted((REPO / "scripts").glob("*.py")) if s.stem != "__init__"]
    missing = []
    with ThreadPoolExecutor(2) as pool:
        for script, text in zip(scripts, pool.map(help_text, scripts)):
            for flag in sorted(set(re.findall(r"(?<![\w-])--[a-zA-Z][\w-]*", text)) - {"--help"}):
                if not re.search(re.escape(flag) + r"(?![\w-])", doc):
                    missing.append(f"{script.stem} {flag}")
    assert missing == []
