"""Files written from the setting declarations of ptycho_lib.config: the JSON schema of
config/config.yaml and the key and flag tables of config/README.md and docs/cli.md.

    python -m ptycho_lib.config_docs          # rewrite them
    python -m ptycho_lib.config_docs --check  # exit 1 when one is stale (a test runs this)

A table sits between `<!-- settings: NAME -->` and `<!-- end settings -->` lines of its
document; the text around it is written by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from . import config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = "workflow/schemas/config.schema.yaml"
DOCUMENTS = ("config/README.md", "docs/cli.md")
NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def _property(f, with_default: bool = True) -> dict:
    md = f.metadata
    out: dict = {}
    if md["nargs"]:
        out["type"] = "array"
        out["items"] = {"type": JSON_TYPES[md["type"]]}
        if md["nargs"] == "+":
            out["minItems"] = 1
        else:
            out["minItems"] = out["maxItems"] = md["nargs"]
    elif md["choices"]:
        out["enum"] = list(md["choices"])
    else:
        out["type"] = JSON_TYPES[md["type"]]
    if f.default is None and "type" in out:
        out["type"] = [out["type"], "null"]
    for key, schema_key in (("min", "minimum"), ("max", "maximum"), ("above", "exclusiveMinimum"),
                            ("pattern", "pattern"), ("multiple_of", "multipleOf")):
        if md[key] is not None:
            (out["items"] if md["nargs"] else out)[schema_key] = md[key]
    if with_default:
        out["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
    out["description"] = md["help"]
    return out


def _section(name: str, with_default: bool = True) -> dict:
    return {"type": "object", "additionalProperties": False,
            "properties": {f.name: _property(f, with_default) for f in config.fields(name) if f.metadata["config"]}}


def schema() -> dict:
    """JSON schema of config/config.yaml. Every setting has its default, which
    Snakemake fills in for keys the file leaves out."""
    dataset = _section("dataset", with_default=False)
    dataset["properties"].update({
        "model": {"type": "string", "description": "model that reconstructs this dataset (default: its own)"},
        "path": {"type": "string", "description": "raw data: an NPZ or CXI file or a ptychodus folder "
                 "(default: resources/NAME.npz, .cxi or NAME/)"},
    })
    sections = {name: {**_section(name), "default": {}} for name in config.SECTIONS if name != "dataset"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "Configuration of the ptychography reconstruction pipeline, written by "
                       "`python -m ptycho_lib.config_docs` from ptycho_lib/config.py (see config/README.md).",
        "type": "object",
        "$defs": {"name": NAME, "dataset": dataset},
        "properties": {
            "datasets": {"description": "scans with settings of their own, by name", "type": "object",
                         "propertyNames": {"$ref": "#/$defs/name"},
                         "additionalProperties": {"anyOf": [{"$ref": "#/$defs/dataset"}, {"type": "null"}]}},
            "dataset_defaults": {"description": "settings of the datasets that do not set them",
                                 **_section("dataset"), "default": {}},
            "models": {"description": "models with settings of their own, by name", "type": "object",
                       "propertyNames": {"$ref": "#/$defs/name"},
                       "additionalProperties": {"type": "object", "additionalProperties": False, "properties": {
                           "train_data": {"anyOf": [{"type": "string"},
                                                    {"type": "array", "items": {"type": "string"}, "minItems": 1}],
                                          "description": "dataset, or list of datasets, the model is trained on"},
                           "simulated_scans": {**_property(next(f for f in config.fields("data") if f.name == "simulated_scans"), False),
                                               "description": "this model's data.simulated_scans"}}},
                       "default": {}},
            **sections,
            "resources": {"type": "object", "properties": {
                "train": {"type": "object", "required": ["mem_mb", "runtime"]},
                "infer": {"type": "object", "required": ["mem_mb", "runtime"]}}},
        },
        "required": ["datasets", "resources"],
    }


def _cell(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value}`" if value != "" else '`""`'


def key_table(section: str) -> str:
    """The keys of a config section: name, default, meaning."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in config.fields(section):
        if f.metadata["config"]:
            rows.append(f"| `{f.name}` | {_cell(f.default)} | {_meaning(f)} |")
    return "\n".join(rows)


def flag_table(program: str) -> str:
    """The settings flags of a program: flag, default, meaning, config key."""
    rows = ["| flag | default | meaning | config key |", "|---|---|---|---|"]
    for sec in config.PROGRAMS[program]:
        for f in config.fields(sec, program):
            md = f.metadata
            name = config.flag(f)
            shown = f"`{name} / --no-{name[2:]}`" if md["type"] is bool else f"`{name}`"
            if md["aliases"]:
                shown += " (old: " + ", ".join(f"`{a}`" for a in md["aliases"]) + ")"
            key = f"`{sec}.{f.name}`" if md["config"] else ""
            rows.append(f"| {shown} | {_cell(f.default)} | {_meaning(f)} | {key} |")
    return "\n".join(rows)


def _meaning(f) -> str:
    md = f.metadata
    text = md["help"]
    if md["choices"]:
        text += "; one of " + ", ".join(f"`{c}`" for c in md["choices"])
    bounds = [f"{op} {md[k]}" for k, op in (("min", ">="), ("above", ">"), ("max", "<="), ("multiple_of", "a multiple of"))
              if md[k] is not None]
    if bounds:
        text += " (" + ", ".join(bounds) + ")"
    return text.replace("|", "\\|")


def tables() -> dict[str, str]:
    out = {f"section {name}": key_table(name) for name in config.SECTIONS}
    out.update({f"program {name}": flag_table(name) for name in config.PROGRAMS})
    return out


def rendered(text: str) -> str:
    """`text` with every marked table rewritten from the declarations."""
    made = tables()

    def fill(m):
        if m[1] not in made:
            raise ValueError(f"unknown settings table {m[1]!r}")
        return f"{m[0].splitlines()[0]}\n{made[m[1]]}\n<!-- end settings -->"

    return re.sub(r"<!-- settings: ([\w ]+) -->\n.*?<!-- end settings -->", fill, text, flags=re.S)


def files(root: Path = REPO) -> dict[Path, str]:
    """Every generated file, path -> the content it should have."""
    out = {root / SCHEMA: "# Written by `python -m ptycho_lib.config_docs` from ptycho_lib/config.py: edit there.\n"
           + yaml.safe_dump(schema(), sort_keys=False, width=110)}
    for doc in DOCUMENTS:
        out[root / doc] = rendered((root / doc).read_text())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    a = p.parse_args(argv)
    stale = [path for path, text in files().items() if not path.is_file() or path.read_text() != text]
    if a.check:
        for path in stale:
            print(f"stale: {path.relative_to(REPO)} (run: python -m ptycho_lib.config_docs)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
