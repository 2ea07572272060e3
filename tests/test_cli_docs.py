"""docs/cli.md is generated from the commands' `--help`; this keeps it from drifting."""

import re
from pathlib import Path

import pytest

from kivi_cli.docs import cli_reference_markdown, renderer_versions

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_every_option_of_the_live_help_is_documented():
    doc = DOC.read_text(encoding="utf-8")
    live = cli_reference_markdown()
    for section in re.findall(r"^## `(kivi[^`]*)`", live, flags=re.M):
        assert f"## `{section}`" in doc, f"docs/cli.md lacks the section for `{section}`: regenerate it"
    missing = sorted(set(re.findall(r"--[a-z][a-z0-9-]+", live)) - set(re.findall(r"--[a-z][a-z0-9-]+", doc)))
    assert not missing, f"docs/cli.md lacks {missing}: regenerate with `python -m kivi_cli.docs > docs/cli.md`"


def test_cli_reference_is_in_sync_with_help():
    actual = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if f"Rendered with {renderer_versions()}." not in actual:
        pytest.skip(f"docs/cli.md was rendered with other typer/rich versions than {renderer_versions()}")
    assert actual == cli_reference_markdown(), "docs/cli.md is stale: regenerate with `python -m kivi_cli.docs > docs/cli.md`"
