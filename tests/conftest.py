"""Shared fixtures: tests never write into the project's own folders, nor reach a model hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.folders import Folders, active_folders, use_folders

# Read by huggingface_hub when it is first imported: set before any test module imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def folders(tmp_path: Path):
    """Fresh input/output/temp/models folders under tmp_path, made active for the test."""
    previous = active_folders()
    chosen = use_folders(Folders.under(tmp_path))
    chosen.ensure()
    yield chosen
    use_folders(previous)
