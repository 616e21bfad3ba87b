"""Texture stage: renderer, generator/discriminator, LSGAN losses, crop-pair data, overfitting real crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkface.models.render import PART_COLOURS, RenderSettings, render_batch, render_landmarks
from talkface.models.texture import (
    PatchDiscriminator,
    TextureConfig,
    TextureGenerator,
    attention_total_variation,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)

torch.set_num_threads(1)  # the CI box and this one are small and shared: no spin-waiting threads

TINY = dict(gen_widths=(8, 16, 16, 32, 32), gen_res_blocks=1, disc_widths=(8, 16, 32, 32))


# -------------------------------------------------------------------------------------------------
# renderer


def _axis_face() -> tuple[np.ndarray, dict[str, set[tuple[int, int]]]]:
    """68 points where every part lies on one horizontal or vertical line, with its lit pixels."""
    p = np.zeros((68, 2), np.float64)
    p[0:17] = np.c_[10 + 5 * np.arange(17), np.full(17, 110)]  # jaw: y=110, x=10..90
    p[17:22] = np.c_[20 + 5 * np.arange(5), np.full(5, 30)]  # right brow: y=30, x=20..40
    p[22:27] = np.c_[70 + 5 * np.arange(5), np.full(5, 30)]  # left brow: y=30, x=70..90
    p[27:31] = np.c_[np.full(4, 60), 40 + 5 * np.arange(4)]  # bridge: x=60, y=40..55
    p[31:36] = np.c_[np.full(5, 60), 56 + np.arange(5)]  # nose base continues: x=60, y=56..60
    p[36:42] = np.c_[25 + 2 * np.arange(6), np.full(6, 45)]  # right eye (closed, degenerate): y=45
    p[42:48] = np.c_[75 + 2 * np.arange(6), np.full(6, 45)]  # left eye: y=45, x=75..85
    p[48:60] = np.c_[40 + 4 * np.arange(12), np.full(12, 85)]  # outer lips: y=85, x=40..84
    p[60:68] = np.c_[45 + 5 * np.arange(8), np.full(8, 90)]  # inner lips: y=90, x=45..80

    def hline(y: int, x0: int, x1: int) -> set[tuple[int, int]]:
        return {(y, x) for x in range(x0, x1 + 1)}

    expected = {
        "jaw": hline(110, 10, 90),
        "right_brow": hline(30, 20, 40),
        "left_brow": hline(30, 70, 90),
        "nose": {(y, 60) for y in range(40, 61)},
        "right_eye": hline(45, 25, 35),
        "left_eye": hline(45, 75, 85),
        "outer_lips": hline(85, 40, 84),
        "inner_lips": hline(90, 45, 80),
    }
    return p, expected


def _lit(image: np.ndarray) -> set[tuple[int, int]]:
    ys, xs = np.nonzero(image.any(axis=-1))
    return set(zip(ys.tolist(), xs.tolist(), strict=True))


def test_render_lights_exactly_the_known_segments_in_part_colours():
    points, expected = _axis_face()
    image = render_landmarks(points, RenderSettings(size=128, colour=True))
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert _lit(image) == set().union(*expected.values())
    colour_of = {**{k: PART_COLOURS[k] for k in PART_COLOURS}, "nose": PART_COLOURS["nose_bridge"]}
    for part, pixels in expected.items():
        for y, x in pixels:
            assert tuple(image[y, x]) == colour_of[part], (part, y, x)


def test_render_mono_single_channel_and_batch_matches_single():
    points, expected = _axis_face()
    mono = render_landmarks(points, RenderSettings(size=128, colour=False))
    assert mono.shape == (128, 128, 1)
    assert set(np.unique(mono)) == {0, 255}
    assert _lit(mono) == set().union(*expected.values())
    batch = render_batch(np.stack([points, points + 1.0]), RenderSettings(size=128))
    assert np.array_equal(batch[0], render_landmarks(points))
    shifted = {(y + 1, x + 1) for y, x in set().union(*expected.values())}
    assert _lit(batch[1]) == shifted


def test_render_skips_nan_points():
    points, expected = _axis_face()
    assert not render_landmarks(np.full((68, 2), np.nan)).any()
    partial = points.copy()
    partial[48:68] = np.nan  # lips missing: everything else still drawn, no lip pixel
    lit = _lit(render_landmarks(partial))
    assert lit == set().union(*(v for k, v in expected.items() if "lips" not in k))
    one = points.copy()
    one[8] = np.nan  # jaw point 8 at x=50: the segments 7-8 and 8-9 (x 46..54) go, the rest stays
    jaw_lit = {(y, x) for y, x in _lit(render_landmarks(one)) if y == 110}
    assert jaw_lit == {(110, x) for x in range(10, 91) if not 45 < x < 55}


# -------------------------------------------------------------------------------------------------
# generator and discriminator


def test_generator_shapes_ranges_and_composite_from_heads():
    torch.manual_seed(0)
    config = TextureConfig(image_size=64, **TINY)
    gen = TextureGenerator(config).eval()
    captured = {}
    gen.colour_head.register_forward_hook(lambda m, i, o: captured.__setitem__("c", o.detach()))
    gen.attention_head.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o.detach()))
    identity = torch.rand(3, 3, 64, 64) * 2 - 1
    sketch = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        out = gen(identity, sketch)
    assert out.frame.shape == (3, 3, 64, 64) and out.colour.shape == (3, 3, 64, 64)
    assert out.attention.shape == (3, 1, 64, 64)
    assert 0.0 <= float(out.attention.min()) and float(out.attention.max()) <= 1.0
    assert -1.0 <= float(out.colour.min()) and float(out.colour.max()) <= 1.0
    # independent recomputation from the raw head outputs
    a = 1.0 / (1.0 + torch.exp(-captured["a"].double()))
    c = torch.tanh(captured["c"].double())
    expected = a * c + (1 - a) * identity.double()
    assert torch.allclose(out.frame.double(), expected, atol=1e-5)
    assert float(out.frame.min()) >= -1.0 and float(out.frame.max()) <= 1.0


def test_discriminator_outputs_one_score_per_patch():
    config = TextureConfig(**TINY)
    disc = PatchDiscriminator(config)
    # 128 -> 64 -> 32 -> 16 (stride 2), then two 4x4 stride-1 convs with padding 1: 15, 14
    assert disc(torch.zeros(2, 3, 128, 128), torch.zeros(2, 3, 128, 128)).shape == (2, 1, 14, 14)
    small = PatchDiscriminator(TextureConfig(image_size=64, **TINY))
    assert small(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)).shape == (1, 1, 6, 6)


def test_mono_sketch_config_takes_one_landmark_channel():
    config = TextureConfig(image_size=64, landmark_colour=False, **TINY)
    out = TextureGenerator(config)(torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 64, 64))
    assert out.frame.shape == (1, 3, 64, 64)


def test_lsgan_losses_match_hand_computed_values():
    real = torch.tensor([[1.0, 0.5], [0.0, 2.0]])
    fake = torch.tensor([[0.0, 0.5], [1.0, -1.0]])
    # D: 0.5 * (mean((r-1)^2) + mean(f^2)) = 0.5 * (mean(0, .25, 1, 1) + mean(0, .25, 1, 1))
    assert float(lsgan_discriminator_loss(real, fake)) == pytest.approx(0.5 * (2.25 / 4 + 2.25 / 4))
    # G: mean((f-1)^2) = mean(1, .25, 0, 4)
    assert float(lsgan_generator_loss(fake)) == pytest.approx(5.25 / 4)


def test_attention_total_variation_hand_computed():
    a = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    # vertical diffs: (1-0)^2, (1-1)^2 -> mean .5; horizontal: (1-0)^2, (1-1)^2 -> mean .5
    assert float(attention_total_variation(a)) == pytest.approx(1.0)


def test_config_round_trip():
    config = TextureConfig(image_size=256, landmark_colour=False, gen_widths=(4, 8), l1_weight=3.0)
    again = TextureConfig.from_dict(config.to_dict())
    assert again == config
    assert again.render_settings.line_width == 2 and again.landmark_channels == 1


# -------------------------------------------------------------------------------------------------
# real crops


def test_crop_pairs_identity_is_never_the_target(prepared_grid):
    from talkface.models.texture import CropPairDataset
    from talkface.preprocess import media
    from talkface.store.dataset import Dataset

    store = Dataset.open(prepared_grid)
    ids = store.parts(val_fallback_seed=0).train[:2]
    config = TextureConfig(**TINY)
    ds = CropPairDataset(prepared_grid, ids, config)
    assert len(ds) == sum(len(store.load_clip(c)["landmarks_aligned"]) for c in ids)
    frames = media.read_video(store.crop_path(ids[0]))
    landmarks = store.load_clip(ids[0])["landmarks_aligned"]
    for index in range(0, 75, 7):
        item = ds.getitem_seeded(index, np.random.default_rng(index))
        t, i = item["target_frame"], item["identity_frame"]
        assert t != i and abs(t - i) >= config.identity_min_gap
        assert item["clip_index"] == 0
        # tensors are the decoded crop frames and the rendered store landmarks, scaled to [-1, 1]
        want_target = torch.from_numpy(frames[t].transpose(2, 0, 1)).float() / 127.5 - 1
        want_identity = torch.from_numpy(frames[i].transpose(2, 0, 1)).float() / 127.5 - 1
        assert torch.allclose(item["target"], want_target) and torch.allclose(item["identity"], want_identity)
        sketch = render_landmarks(landmarks[t], config.render_settings)
        assert torch.allclose(item["landmark_image"],
                              torch.from_numpy(sketch.transpose(2, 0, 1)).float() / 127.5 - 1)
    # identity frames are spread over the clip, not one fixed frame
    draws = {ds.getitem_seeded(10, np.random.default_rng(s))["identity_frame"] for s in range(20)}
    assert len(draws) > 5


OVERFIT_STEPS = 60
OVERFIT_FACTOR = 2.0


def test_texture_stage_overfits_a_tiny_batch_of_real_crops(prepared_grid, tmp_path):
    """L1 on 4 fixed real pairs falls by >= 2x within 60 steps (tiny widths, lr 2e-3, CPU)."""
    from lightning.fabric import Fabric

    from talkface.models.fabric_loop import TrainContext, TrainSettings
    from talkface.models.texture import TextureStage

    torch.manual_seed(0)
    settings = TrainSettings(out_dir=tmp_path, batch_size=4, lr=2e-3, accelerator="cpu")
    stage = TextureStage(prepared_grid, None, TextureConfig(**TINY))
    stage.setup(settings, None)
    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    models = stage.build_models()
    opts = stage.build_optimizers(models, settings)
    wrapped = {k: fabric.setup(m, opts[k]) for k, m in models.items()}
    ctx = TrainContext(fabric=fabric, models={k: w[0] for k, w in wrapped.items()},
                       optimizers={k: w[1] for k, w in wrapped.items()}, settings=settings)
    data = stage.train_dataset()
    items = [data.getitem_seeded(i, np.random.default_rng(i)) for i in (3, 80, 160, 240)]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("identity", "landmark_image", "target")}
    l1 = [stage.training_step(ctx, batch)["l1"] for _ in range(OVERFIT_STEPS)]
    first, last = np.mean(l1[:3]), np.mean(l1[-3:])
    assert last < first / OVERFIT_FACTOR, (first, last)


def test_instance_norm_equals_torch_instance_norm():
    from torch import nn

    from talkface.models.texture import instance_norm

    torch.manual_seed(0)
    ours, ref = instance_norm(5), nn.InstanceNorm2d(5, affine=True)
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
        ref.weight.copy_(ours.weight), ref.bias.copy_(ours.bias)
    x = torch.randn(3, 5, 9, 7) * 4 + 2
    assert torch.allclose(ours(x), ref(x), atol=1e-5)
    assert torch.allclose(ours(x.contiguous(memory_format=torch.channels_last)), ref(x), atol=1e-5)


def test_texture_training_resumes_to_the_same_weights(prepared_grid, tmp_path):
    """4 steps straight == 2 steps, then --resume to 4 (weights equal exactly on CPU, fixed seed)."""
    from talkface.models.fabric_loop import TrainSettings, run_training
    from talkface.models.texture import TextureStage
    from talkface.store.checkpoints import load_checkpoint

    def train(out, steps, resume=False):
        settings = TrainSettings(out_dir=out, max_steps=steps, batch_size=2, accelerator="cpu", seed=3,
                                 ckpt_every=2, val_every=1000, image_every=1000, resume=resume, lr=2e-4)
        run_training(TextureStage(prepared_grid, None, TextureConfig(val_max_samples=2, **TINY)), settings,
                     quiet=True)
        return load_checkpoint(out / "checkpoints" / "last.pt")

    straight = train(tmp_path / "a", 4)
    train(tmp_path / "b", 2)
    resumed = train(tmp_path / "b", 4, resume=True)
    assert resumed["step"] == straight["step"] == 4
    for model in ("generator", "discriminator"):
        for name, tensor in straight["models"][model].items():
            assert torch.equal(tensor, resumed["models"][model][name]), (model, name)
