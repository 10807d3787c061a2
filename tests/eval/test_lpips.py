"""LPIPS as an eval metric: files this test builds (random VGG16 + heads), and parity with the
``lpips`` package given the same weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from adatok.eval.lpips import WeightsNotFoundError, load_lpips, lpips_distance


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    features = torchvision.models.vgg16(weights=None).features
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, d / "vgg16-397923af.pth")
    widths = (64, 128, 256, 512, 512)
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(widths)}, d / "vgg.pth")
    return d


def test_lpips_equals_the_lpips_package_with_the_same_weights(lpips_files):
    import lpips

    ours = load_lpips(weights_dir=lpips_files)
    ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, model_path=str(lpips_files / "vgg.pth"),
                      verbose=False).eval()
    vgg = torch.load(lpips_files / "vgg16-397923af.pth")
    for k in range(1, 6):
        sl = getattr(ref.net, f"slice{k}")
        sl.load_state_dict({n: vgg[f"features.{n}"] for n in sl.state_dict()})
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 32, 32, generator=g)
    b = (a + 0.3 * torch.rand(3, 3, 32, 32, generator=g)).clamp(0, 1)
    d = lpips_distance(ours, a, b, batch_size=2)
    with torch.no_grad():
        expected = ref(a, b, normalize=True).flatten().double()
    assert d.shape == (3,) and d.dtype == torch.float64
    assert torch.allclose(d, expected, rtol=1e-4, atol=1e-6)
    assert (d > 0).all() and lpips_distance(ours, a, a).abs().max() < 1e-6


def test_missing_lpips_files_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("ADATOK_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError) as e:
        load_lpips(weights_dir=tmp_path, heads_path=tmp_path / "none.pth")
    assert "\n" not in str(e.value) and "vgg16-397923af.pth" in str(e.value)
