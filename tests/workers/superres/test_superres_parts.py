"""The super-resolution parts on their own: the figures against scikit-image's, the network's start at
bicubic, the pairs and the held-out choice, and the upscaler the ingest uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from shared.errors import InputError
from workers.superres.evaluate import classical_upscale, evaluate
from workers.superres.network import NetworkShape, SuperResolution, load_model, save_model
from workers.superres.pairs import is_held_out, make_pairs
from workers.superres.quality import psnr, scores, shave, ssim
from workers.superres.upscale import Upscaler


def _noisy(seed: int, shape: tuple[int, int] = (97, 130)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = (np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 256).astype(np.uint8)
    estimate = np.clip(truth + rng.normal(0, 8 + 4 * seed, shape), 0, 255).astype(np.uint8)
    return truth, estimate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_and_ssim_are_scikit_images(seed: int) -> None:
    truth, estimate = _noisy(seed)
    assert psnr(truth, estimate) == pytest.approx(peak_signal_noise_ratio(truth, estimate, data_range=255), abs=1e-9)
    expected = structural_similarity(
        truth, estimate, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(truth, estimate) == pytest.approx(expected, abs=1e-9)
    shaved = scores(truth, estimate, 2)
    assert shaved["psnr"] == pytest.approx(peak_signal_noise_ratio(shave(truth, 2), shave(estimate, 2), data_range=255))


def test_an_untrained_network_is_bicubic_and_its_file_loads_back(tmp_path: Path) -> None:
    model = SuperResolution(NetworkShape(2, features=8, blocks=1))
    x = torch.rand(1, 1, 24, 20)
    assert torch.equal(model(x), F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False))
    torch.nn.init.normal_(model.tail.weight)
    save_model(model, tmp_path / "m.pth", {"run": "r7"})
    loaded, about = load_model(tmp_path / "m.pth")
    assert about == {"run": "r7"} and torch.allclose(loaded(x), model(x))
    with pytest.raises(ValueError, match="by 2 or 4"):
        SuperResolution(NetworkShape(3))


def test_the_held_out_choice_is_stable_per_name() -> None:
    names = [f"IMG{n:07d}.jpg" for n in range(400)]
    held = [name for name in names if is_held_out(name, 0.2, 0)]
    assert 50 < len(held) < 110
    assert held == [name for name in names if is_held_out(name, 0.2, 0)]
    assert held != [name for name in names if is_held_out(name, 0.2, 1)]


def test_pairs_come_from_the_large_pictures_only(mini: Path) -> None:
    pairs = make_pairs(mini, 2, 454, 1024, 0.2, 0)
    assert pairs.train and pairs.held_out
    names = {pair.name for pair in pairs.train} | {pair.name for pair in pairs.held_out}
    assert not {pair.name for pair in pairs.train} & {pair.name for pair in pairs.held_out}
    sizes = {path.name: Image.open(path).size for path in mini.rglob("*.jpg")}
    assert all(max(sizes[name]) >= 1024 for name in names) and len(names) == 32  # the mini set's large pictures
    for pair in pairs.train[:3]:
        assert max(pair.truth.shape) in (907, 908) and pair.truth.shape == tuple(2 * s for s in pair.small.shape)
    # Bicubic from the pair's input is close to its truth, but not the truth.
    figures = evaluate(SuperResolution(NetworkShape(2, 8, 1)), pairs.held_out[:2], torch.device("cpu"))
    assert 25 < figures["bicubic_psnr"] < 60 and figures["network_psnr"] == pytest.approx(
        figures["bicubic_psnr"], abs=1.0
    ), "an untrained network is torch's bicubic, within a dB of Pillow's"


def test_a_release_without_large_pictures_is_refused_by_name(release) -> None:  # noqa: ANN001 - a fixture
    folder = release(fractured=4, non_fractured=2)
    with pytest.raises(InputError, match=f"{folder}.*0 picture.*1024 px or more"):
        make_pairs(folder, 2, 454, 1024, 0.2, 0)


def test_the_upscaler_enlarges_with_the_smallest_scale_that_reaches_the_target(tmp_path: Path) -> None:
    rows, columns = np.mgrid[0:60, 0:40]
    picture = Image.fromarray((128 + 100 * np.sin(rows / 7) * np.cos(columns / 5)).astype(np.uint8))
    assert Upscaler({})(picture, (80, 120))[1] == "bicubic"
    for scale in (2, 4):
        save_model(SuperResolution(NetworkShape(scale, 8, 1)), tmp_path / f"x{scale}.pth", {"run": "r5"})
    both = Upscaler({4: str(tmp_path / "x4.pth"), 2: str(tmp_path / "x2.pth")})
    pixels, how = both(picture, (60, 90))
    assert how == "sr x2 (r5)" and pixels.shape == (90, 60)
    pixels, how = both(picture, (120, 180))
    assert how == "sr x4 (r5)" and pixels.shape == (180, 120)
    # An untrained network is bicubic: the result is the classical enlargement's, give or take rounding.
    reference = classical_upscale(np.asarray(picture), 2, "bicubic")
    enlarged, _ = Upscaler({2: str(tmp_path / "x2.pth")})(picture, (80, 120))
    assert np.abs(enlarged.astype(int) - reference.astype(int)).mean() < 1
