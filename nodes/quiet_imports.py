"""Silences import-time notices of the ML libraries that are noise for Kinema.

transformers warns, the first time a diffusers pipeline imports ``CLIPImageProcessor``, that
it falls back to the PIL image processor because torchvision is missing. Kinema never installs
torchvision (torch is pinned), so the notice would print on every start, and on the CLI's
stderr, where a workflow's structured error must be the only thing written.
"""

from __future__ import annotations

import logging


class TorchvisionFallbackNotice(logging.Filter):
    """Drops transformers' "requires torchvision ... falling back to ...Pil" warning only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(TorchvisionFallbackNotice())
