"""Shared fixtures: tests never write into the project's own folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.folders import Folders, active_folders, use_folders


@pytest.fixture
def folders(tmp_path: Path):
    """Fresh input/output/temp/models folders under tmp_path, made active for the test."""
    previous = active_folders()
    chosen = use_folders(Folders.under(tmp_path))
    chosen.ensure()
    yield chosen
    use_folders(previous)
