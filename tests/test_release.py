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
