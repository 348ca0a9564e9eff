"""The weights-free test clip: the frames the pattern defines, at the asked size and rate."""

from __future__ import annotations

import numpy as np

from nodes.synthetic import SyntheticClip
from tests.video.clips import render


def test_the_synthetic_clip_is_the_pattern_with_its_cut(folders):
    (frames,) = SyntheticClip().make(width=48, height=32, frames=20, fps=6.0, speed=3.0,
                                     cut_at=12)
    assert (len(frames), frames.width, frames.height, frames.fps) == (20, 48, 32, 6.0)
    data = frames.read_raw(0, 20)
    assert np.array_equal(data[5], render(5, 48, 32, 3.0))
    assert np.array_equal(data[12], render(12, 48, 32, 3.0, scene=1))
    assert not np.array_equal(data[12], render(12, 48, 32, 3.0))
