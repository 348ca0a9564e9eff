"""Fixtures of the generation tests: the tiny models, built once, and their folders."""

from __future__ import annotations

import pytest

from engine.folders import active_folders, use_folders
from tests.generation.workspace import Workspace, build_workspace


@pytest.fixture(scope="session")
def sd_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The tiny models, built once per session."""
    return build_workspace(tmp_path_factory.mktemp("kinema-models"))


@pytest.fixture
def workspace(sd_workspace: Workspace):
    """The tiny models' folders, active for one test."""
    previous = active_folders()
    use_folders(sd_workspace.folders)
    yield sd_workspace
    use_folders(previous)
