"""docs/cli.md is generated from the commands' `--help`; this keeps it from drifting."""

from pathlib import Path

from kivi_cli.docs import cli_reference_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_is_in_sync_with_help():
    expected = cli_reference_markdown()
    actual = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert actual == expected, "docs/cli.md is stale: regenerate with `python -m kivi_cli.docs > docs/cli.md`"
