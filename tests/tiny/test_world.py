"""The tiny world: captions, the held-out split, rendering, and the detector that scores clips."""

from __future__ import annotations

import numpy as np
import pytest

from tools.tiny_detect import read_clip
from tools.tiny_world import (
    COLOURS,
    FRAMES,
    MOTIONS,
    SIZE,
    Scene,
    Variation,
    all_scenes,
    held_out_scenes,
    parse_caption,
    render,
    training_scenes,
)


def test_captions_are_unique_and_read_back():
    scenes = all_scenes()
    assert len({s.caption for s in scenes}) == len(scenes)
    assert parse_caption("a red circle moving left on a grey background") == Scene(
        "red", "circle", "moving left", "grey")
    with pytest.raises(ValueError, match="not a caption of the tiny world"):
        parse_caption("a red dragon flying")


def test_held_out_captions_recombine_what_training_shows():
    train, held = training_scenes(), held_out_scenes()
    assert held and not {s.caption for s in held} & {s.caption for s in train}
    seen = {(s.colour, s.motion) for s in train}
    assert {s.colour for s in train} == set(COLOURS) and {s.motion for s in train} == set(MOTIONS)
    assert all((s.colour, s.motion) not in seen for s in held)


def test_a_clip_is_the_size_and_length_asked_and_deterministic():
    scene = Scene("blue", "triangle", "spinning", "black")
    clip = render(scene)
    assert clip.shape == (FRAMES, SIZE, SIZE, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, render(scene))


def test_the_detector_reads_every_attribute_of_varied_renderings():
    rng = np.random.default_rng(7)
    scenes = all_scenes()
    for index in rng.choice(len(scenes), 60, replace=False):
        scene = scenes[index]
        reading = read_clip(render(scene, Variation.random(rng)))
        assert all(reading.matches(scene).values()), (scene.caption, reading)
        assert reading.jitter < 1.0, "a rendered track is smooth"


@pytest.mark.parametrize(("motion", "reversed_motion"), [
    ("moving left", "moving right"), ("moving up", "moving down"),
    ("growing", "shrinking")])
def test_the_detector_tells_a_motion_from_its_reverse(motion, reversed_motion):
    clip = render(Scene("yellow", "square", motion, "grey"))
    assert read_clip(clip).motion == motion
    assert read_clip(clip[::-1]).motion == reversed_motion


def test_a_still_clip_has_no_motion_and_an_empty_one_no_object():
    clip = render(Scene("white", "square", "spinning", "black"))
    assert read_clip(np.repeat(clip[:1], FRAMES, axis=0)).motion is None
    empty = read_clip(np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8))
    assert (empty.background, empty.colour, empty.motion) == ("black", None, None)


def test_shaky_tracks_score_worse_smoothness():
    clip = render(Scene("red", "circle", "moving right", "sky blue"))
    shaky = clip.copy()
    shaky[1::2] = np.roll(clip[1::2], 3, axis=1)
    assert read_clip(shaky).jitter > 2 * read_clip(clip).jitter + 1.0
