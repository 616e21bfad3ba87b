"""LPIPS: the plain-torch network against an independent functional forward written from the paper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from needs import require_path

from talkface.evaluate.metrics import get_metric, lpips
from talkface.evaluate.metrics.base import ClipSample, MetricUnavailable

torch.set_num_threads(1)

# torchvision's layer lists, written out independently of the module: ("conv", cin, cout, k, stride, pad,
# tapped?) and ("pool", k, stride); taps are the ReLUs LPIPS reads (alex relu1..5, vgg relu1_2..relu5_3).
ALEX = [("conv", 3, 64, 11, 4, 2, True), ("pool", 3, 2), ("conv", 64, 192, 5, 1, 2, True), ("pool", 3, 2),
        ("conv", 192, 384, 3, 1, 1, True), ("conv", 384, 256, 3, 1, 1, True),
        ("conv", 256, 256, 3, 1, 1, True)]
_V = [(3, 64, False), (64, 64, True), "P", (64, 128, False), (128, 128, True), "P", (128, 256, False),
      (256, 256, False), (256, 256, True), "P", (256, 512, False), (512, 512, False), (512, 512, True), "P",
      (512, 512, False), (512, 512, False), (512, 512, True)]
VGG = [("pool", 2, 2) if v == "P" else ("conv", v[0], v[1], 3, 1, 1, v[2]) for v in _V]
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def _random_weights(tmp_path, net: str, seed: int = 0, negative_head: bool = False):
    """A torchvision-layout backbone state_dict and lpips-layout heads, random; returns paths and tensors."""
    g = torch.Generator().manual_seed(seed)
    spec = ALEX if net == "alex" else VGG
    state, convs, idx = {}, [], 0
    for layer in spec:
        if layer[0] == "conv":
            _, cin, cout, k, s, p, tap = layer
            w = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(2.0 / (cin * k * k))
            b = torch.randn(cout, generator=g) * 0.05
            state[f"features.{idx}.weight"], state[f"features.{idx}.bias"] = w, b
            convs.append((w, b, s, p, tap))
            idx += 2  # conv, relu
        else:
            convs.append(("pool", layer[1], layer[2]))
            idx += 1
    state["classifier.1.weight"] = torch.zeros(4, 4)  # ignored, as in a full torchvision file
    heads = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(CHANNELS[net])
    }
    if negative_head:
        heads["lin2.model.1.weight"][0, 0] = -0.5
    bpath, hpath = tmp_path / f"{net}_backbone.pth", tmp_path / f"{net}_heads.pth"
    torch.save(state, bpath)
    torch.save(heads, hpath)
    return bpath, hpath, convs, [heads[f"lin{k}.model.1.weight"] for k in range(5)]


def _reference_lpips(a: np.ndarray, b: np.ndarray, convs, heads, net: str) -> np.ndarray:
    """LPIPS from the paper's equation: d = sum_l mean_hw || w_l * (y0_hat - y1_hat) ||^2, in float64."""
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def feats(img):
        h = torch.from_numpy(img.astype(np.float64) / 127.5 - 1.0).permute(0, 3, 1, 2)
        h = (h - shift) / scale
        out = []
        for layer in convs:
            if layer[0] == "pool":
                h = F.max_pool2d(h, layer[1], layer[2])
            else:
                w, bias, s, p, tap = layer
                h = F.relu(F.conv2d(h, w.double(), bias.double(), stride=s, padding=p))
                if tap:
                    out.append(h)
        return out

    total = 0.0
    for fa, fb, w in zip(feats(a), feats(b), heads, strict=True):
        na = fa / (torch.sqrt((fa**2).sum(1, keepdim=True)) + 1e-10)
        nb = fb / (torch.sqrt((fb**2).sum(1, keepdim=True)) + 1e-10)
        weighted = ((na - nb) ** 2 * w.double().view(1, -1, 1, 1)).sum(1)  # 1x1 linear head
        total = total + weighted.mean((1, 2))
    return total.numpy()


def _images(seed: int, n: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize(("net", "size"), [("alex", 64), ("vgg", 32)])
def test_lpips_matches_independent_forward(tmp_path, net, size):
    bpath, hpath, convs, heads = _random_weights(tmp_path, net)
    a, b = _images(1, 3, size), _images(2, 3, size)
    got = lpips(a, b, net=net, backbone_weights=bpath, lpips_weights=hpath)
    ref = _reference_lpips(a, b, convs, heads, net)
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    assert (got > 0).all()


def test_lpips_properties(tmp_path):
    bpath, hpath, _, _ = _random_weights(tmp_path, "alex", seed=3)
    a, b = _images(4, 2, 64), _images(5, 2, 64)
    kw = {"net": "alex", "backbone_weights": bpath, "lpips_weights": hpath}
    np.testing.assert_allclose(lpips(a, a, **kw), 0.0, atol=1e-7)  # identical images: exactly zero
    np.testing.assert_allclose(lpips(a, b, **kw), lpips(b, a, **kw), rtol=1e-6)  # symmetric
    # zero heads would give 0; non-negative heads make every distance non-negative
    assert (lpips(a, b, **kw) >= 0).all()


def test_lpips_metric_class(tmp_path):
    bpath, hpath, convs, heads = _random_weights(tmp_path, "alex", seed=6)
    frames, ref = _images(7, 4, 64), _images(8, 4, 64)
    metric = get_metric("lpips:alex", lpips_weights=str(hpath), lpips_backbone=str(bpath), frame_step=2)
    res = metric(ClipSample("c", frames, 25.0, ref_frames=ref))
    expected = _reference_lpips(frames[[0, 2]], ref[[0, 2]], convs, heads, "alex")
    np.testing.assert_allclose(res.per_frame[[0, 2]], expected, rtol=1e-4)
    assert np.isnan(res.per_frame[[1, 3]]).all()
    assert res.value == pytest.approx(expected.mean(), rel=1e-4)
    d = metric.definition()
    assert d["variant"] == "alex-every2" and d["higher_is_better"] is False  # non-default step shown
    assert d["frame_step"] == 2 and "v0.1" in d["lpips_version"]
    typed = get_metric("lpips:alex", lpips_weights=str(hpath), lpips_backbone=str(bpath))
    assert typed.variant == "alex"  # the variant written is the one the user typed
    assert len(d["backbone_sha256"]) == 64 and len(d["heads_sha256"]) == 64
    assert "missing input" in metric(ClipSample("c", frames, 25.0)).error


def test_lpips_errors_name_file_key_and_shape(tmp_path):
    bpath, hpath, _, _ = _random_weights(tmp_path, "alex")
    with pytest.raises(MetricUnavailable, match="alexnet-owt-7be5be79.pth"):
        get_metric("lpips", lpips_weights=str(hpath))
    with pytest.raises(MetricUnavailable, match="not found"):
        get_metric("lpips", lpips_weights=str(hpath), lpips_backbone=str(tmp_path / "nope.pth"))
    state = torch.load(bpath, weights_only=True)
    del state["features.3.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(MetricUnavailable, match=r"lacks key 'features.3.weight'"):
        get_metric("lpips", lpips_weights=str(hpath), lpips_backbone=str(tmp_path / "broken.pth"))
    # an AlexNet backbone given to the VGG variant: the first mismatching key and both shapes are named
    shapes = r"features.0.weight' has shape \(64, 3, 11, 11\), expected \(64, 3, 3, 3\)"
    with pytest.raises(MetricUnavailable, match=shapes):
        get_metric("lpips:vgg", lpips_weights=str(hpath), lpips_backbone=str(bpath))
    neg_dir = tmp_path / "neg"
    neg_dir.mkdir()
    _, neg_heads, _, _ = _random_weights(neg_dir, "alex", negative_head=True)
    with pytest.raises(MetricUnavailable, match="negative"):
        get_metric("lpips", lpips_weights=str(neg_heads), lpips_backbone=str(bpath))


# ------------------------------------------------------------------------------------------------
# Real weights (../shared/fixtures/reference/lpips) against the values the IQA-PyTorch project
# publishes for the official LPIPS (alex, v0.1) on five TID2013 pairs (reference/iqa_pairs).

PAIRS = ("I03", "I04", "I06", "I08", "I19")
PUBLISHED_LPIPS_ALEX = (0.7237, 0.2572, 0.05079, 0.05205, 0.4253)  # published_values.csv, row lpips


@pytest.fixture(scope="module")
def reference_dir(fixtures_root):
    folder = fixtures_root / "reference"
    require_path(folder / "lpips" / "alex.pth", "real LPIPS reference weights")
    return folder


def _pairs(reference_dir):
    import cv2

    def read(kind):
        return np.stack([cv2.imread(str(reference_dir / "iqa_pairs" / kind / f"{n}.bmp"))[..., ::-1]
                         for n in PAIRS])

    return read("dist"), read("ref")


def test_lpips_alex_real_weights_reproduce_published_values(reference_dir):
    dist, ref = _pairs(reference_dir)
    got = lpips(dist, ref, net="alex", backbone_weights=reference_dir / "lpips" / "alexnet_features.pth",
                lpips_weights=reference_dir / "lpips" / "alex.pth", batch_size=1)
    # published to 4 significant digits; measured |difference| <= 3e-5
    np.testing.assert_allclose(got, PUBLISHED_LPIPS_ALEX, atol=1e-3)
    assert np.abs(got - PUBLISHED_LPIPS_ALEX).max() < 1e-4


def test_lpips_vgg_real_weights_load_and_behave(reference_dir):
    """No published VGG value comes with the reference pairs: the real VGG16 weights load by key, give
    exactly 0 for identical images, and rank the heavily distorted pairs (I03, I19) above the mild
    ones (I04, I06, I08) as AlexNet does (128x128 centre crops, to keep the test fast)."""
    dist, ref = _pairs(reference_dir)
    crop = (slice(None), slice(128, 256), slice(192, 320))
    kw = {"net": "vgg", "backbone_weights": reference_dir / "lpips" / "vgg16_features.pth",
          "lpips_weights": reference_dir / "lpips" / "vgg.pth"}
    d = lpips(dist[crop], ref[crop], **kw)
    np.testing.assert_allclose(lpips(ref[crop][:2], ref[crop][:2], **kw), 0.0, atol=1e-7)
    assert min(d[0], d[4]) > max(d[1], d[2], d[3])
