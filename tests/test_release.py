"""The release files agree: one version (ptycho_lib.__version__, which the package
metadata reads), named by CITATION.cff and by a CHANGELOG section; the licence file
is the one pyproject.toml declares."""

import re

import yaml

from conftest import REPO
from ptycho_lib import __version__


def test_version_licence_and_citation_agree():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'version = {attr = "ptycho_lib.__version__"}' in pyproject
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["version"] == __version__
    assert citation["license"] in pyproject and "BSD 3-Clause" in (REPO / "LICENSE").read_text()
    assert re.search(rf"^## {re.escape(__version__)}$", (REPO / "CHANGELOG.md").read_text(), re.M)
    dois = [citation["preferred-citation"]["doi"], *(r["doi"] for r in citation["references"])]
    assert len(dois) == 5 and all(re.fullmatch(r"10\.\d{4,5}/\S+", d) for d in dois)


def test_the_readme_reads_in_five_minutes():
    """Under 1,200 words before its first link into docs/, and it opens with the two
    commands: the main job and the tests, each from a fresh machine."""
    text = (REPO / "README.md").read_text()
    assert len(text[:text.index("](docs/")].split()) < 1200
    first, second = re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]
    assert first.startswith("python3 -m venv") and "snakemake" in first
    assert second.startswith("python3 -m venv") and second.endswith("pytest")
    assert second in (REPO / ".ci/run").read_text()
