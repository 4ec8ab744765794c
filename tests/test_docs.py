"""The operator docs list every setting there is."""

from __future__ import annotations

from pathlib import Path

from roomcast.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_operations_md_documents_every_setting() -> None:
    text = (DOCS / "operations.md").read_text()
    missing = [name for name in Settings.model_fields if f"`ROOMCAST_{name.upper()}`" not in text]
    assert missing == []
