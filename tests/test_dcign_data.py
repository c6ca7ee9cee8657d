"""Training data and the deterministic batch schedule."""

from collections import Counter

import numpy as np
import pytest
import torch
from dataset_fixtures import make_fake_dataset

from dcign.config import ConfigError
from dcign.data import Schedule, TrainingData, load_training_data
from render.shards import RenderedDataset, ShardError

RATIO = {"azimuth": 1, "elevation": 1, "light": 1, "intrinsic": 10}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    dirs = make_fake_dataset(
        tmp_path_factory.mktemp("d"),
        sweeps=("azimuth", "elevation", "light", "shape", "texture"),
        n_batches=3,
        batch_size=4,
    )
    return load_training_data(dirs)


def test_data_layout(data):
    assert data.images.shape == (15 * 4, 1, 16, 16) and data.images.dtype == torch.uint8
    assert list(data.group[:3]) == ["azimuth"] * 3 and set(data.group[9:]) == {"intrinsic"}
    s = Schedule(data, RATIO, seed=0, latent=5, entangled=False)
    x, eps = data.fetch(s.slot(0, 0), torch.device("cpu"), channels_last=True)
    assert x.shape == (4, 1, 16, 16) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert eps.shape == (4, 5)


def test_schedule_is_a_function_of_seed_and_step(data):
    a = Schedule(data, RATIO, seed=3, latent=5, entangled=False)
    b = Schedule(data, RATIO, seed=3, latent=5, entangled=False)
    for step in (0, 7, 1000):
        sa, sb = a.slot(step, 1), b.slot(step, 1)
        assert sa.active == sb.active and np.array_equal(sa.images, sb.images) and np.array_equal(sa.eps, sb.eps)
    # a rank's slice of a step equals the same slots taken by one process
    two = a.slots(5, 0, 2)
    assert np.array_equal(two[1].images, a.slots(5, 1, 1)[0].images)
    assert not np.array_equal(a.slot(0, 0).eps, a.slot(1, 0).eps)


def test_schedule_follows_ratio_and_takes_whole_batches(data):
    s = Schedule(data, RATIO, seed=0, latent=2, entangled=False)
    slots = [s.slot(step, 0) for step in range(1300)]
    counts = Counter(sl.active for sl in slots)
    assert 0.68 < counts["intrinsic"] / 1300 < 0.86 and min(counts.values()) > 50
    for sl in slots[:50]:
        batch = sl.images[0] // 4
        assert np.array_equal(sl.images, np.arange(batch * 4, batch * 4 + 4))
        assert data.group[batch] == sl.active


def test_swap_partners_are_drawn_last_and_only_for_sweep_batches(data):
    plain = Schedule(data, RATIO, seed=2, latent=5, entangled=False)
    half = Schedule(data, RATIO, seed=2, latent=5, entangled=False, swap=0.5)
    every = Schedule(data, RATIO, seed=2, latent=5, entangled=False, swap=1.0)
    n = data.batch_size
    swapped = 0
    for step in range(200):
        a, b, c = plain.slot(step, 0), half.slot(step, 0), every.slot(step, 0)
        # the draws before the partners are those of a run without them
        assert a.active == b.active == c.active and np.array_equal(a.images, c.images) and np.array_equal(a.eps, c.eps)
        assert a.partner is None
        assert np.all(c.partner != np.arange(n)) and c.partner.min() >= 0 and c.partner.max() < n  # another image
        swapped += int(np.sum(b.partner != np.arange(n)))
    assert 0.4 < swapped / (200 * n) < 0.6  # about the share asked for
    assert Schedule(data, RATIO, seed=2, latent=5, entangled=True, swap=1.0).slot(0, 0).partner is None


def test_edit_partners_before_edit_until_and_the_decoder_phase_share_after(data):
    """The clamped steps (before edit_until) draw partners at the edit share, the decoder phase at its own."""
    both = Schedule(data, RATIO, seed=2, latent=5, entangled=False, swap=0.5, edit=1.0, edit_until=50)
    edit_only = Schedule(data, RATIO, seed=2, latent=5, entangled=False, edit=1.0, edit_until=50)
    swap_only = Schedule(data, RATIO, seed=2, latent=5, entangled=False, swap=1.0)
    swap_half = Schedule(data, RATIO, seed=2, latent=5, entangled=False, swap=0.5)
    n = data.batch_size
    for step in range(100):
        a, b, c = both.slot(step, 0), edit_only.slot(step, 0), swap_only.slot(step, 0)
        if step < 50:  # the same partners as the decoder phase's draw would give: one rule, two shares
            assert np.all(a.partner != np.arange(n)) and np.array_equal(a.partner, c.partner)
            assert np.array_equal(b.partner, c.partner)
        else:  # the decoder phase's share (0.5 in `both`, none in `edit_only`)
            assert np.array_equal(a.partner, swap_half.slot(step, 0).partner) and b.partner is None
        assert np.array_equal(a.eps, c.eps) and np.array_equal(a.images, c.images)


def test_schedule_skips_absent_groups(tmp_path):
    data = load_training_data(make_fake_dataset(tmp_path, sweeps=("azimuth", "intrinsic"), n_batches=2, batch_size=4))
    s = Schedule(data, {"azimuth": 1, "light": 5, "intrinsic": 0}, seed=0, latent=2, entangled=False)
    assert {s.slot(i, 0).active for i in range(30)} == {"azimuth"}
    with pytest.raises(ConfigError, match="no weight"):
        Schedule(data, {"light": 1}, seed=0, latent=2, entangled=False)


def test_entangled_draws_random_images(data):
    s = Schedule(data, RATIO, seed=0, latent=2, entangled=True)
    sl = s.slot(0, 0)
    assert sl.active is None and len(set(sl.images)) == 4
    spread = {int(i) // 4 for step in range(20) for i in s.slot(step, 0).images}
    assert len(spread) > 8  # images come from many render batches


def test_missing_or_empty_dataset(tmp_path):
    with pytest.raises(ShardError, match="does not exist"):
        load_training_data([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match="manifest"):
        load_training_data([tmp_path / "empty"])
    with pytest.raises(ShardError, match="no dataset"):
        load_training_data([])


def test_batches_of_one_image_name_the_data_folder_and_the_fix(tmp_path):
    (folder,) = make_fake_dataset(tmp_path, sweeps=("azimuth",), batch_size=1)
    with pytest.raises(ShardError) as info:
        load_training_data([folder])
    message = str(info.value)
    assert message.startswith(
        f"{folder}: rendered in batches of 1 image, but clamping to a batch mean needs at least 2"
    )
    assert message.endswith("render it again with --batch-size 2 or more (render.batch_size)")
    assert message.isprintable() and len(message) - len(str(folder)) <= 200


def test_rgb_renders_become_grey():
    rgb = np.zeros((2, 3, 8, 8, 3), np.uint8)
    rgb[..., 1] = 100  # pure green -> 0.72 * 100
    f = np.zeros((2, 3), np.float32)
    ds = RenderedDataset(
        images=rgb,
        sweep=np.array(["light", "texture"]),
        azimuth=f,
        elevation=f,
        light=f,
        identity=f.astype(np.int64),
        shape=f[..., None],
        albedo=f[..., None],
    )
    data = TrainingData(ds)
    assert data.images.shape == (6, 1, 8, 8) and int(data.images.max()) == 72
    assert list(data.group) == ["light", "intrinsic"]
