"""The classifier's parts in-process: the split, the model's weights, augmentation, reading radiographs."""

from __future__ import annotations

import socket
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from shared.defaults import BACKBONES
from shared.errors import InputError
from workers.classifier.augment import augment
from workers.classifier.data import TEST, TRAIN, VAL, stratified_split
from workers.classifier.model import NETWORKS, build_model, initial_model


def test_the_split_is_seeded_and_stratified_by_label_and_region() -> None:
    labels = np.array([1] * 120 + [0] * 480)
    regions = [("hand", "leg", "hip")[i % 3] for i in range(600)]
    split = stratified_split(labels, regions, 0.15, 0.15, seed=3)
    assert sorted(sum(split.values(), [])) == list(range(600)), "every image in exactly one part"
    assert {part: len(indices) for part, indices in split.items()} == {TRAIN: 420, VAL: 90, TEST: 90}
    for part in (VAL, TEST):
        strata = Counter((int(labels[i]), regions[i]) for i in split[part])
        assert all(count in (6, 24) for count in strata.values()), strata  # 15% of 40 and of 160
    assert split == stratified_split(labels, regions, 0.15, 0.15, seed=3)
    assert split != stratified_split(labels, regions, 0.15, 0.15, seed=4)


def test_a_split_without_both_classes_in_a_part_is_refused() -> None:
    with pytest.raises(InputError, match="too few"):
        stratified_split(np.array([1, 0, 0, 0]), ["hand"] * 4, 0.15, 0.15, seed=0)


def test_a_state_dict_goes_round_trip_through_weights_path(tmp_path: Path) -> None:
    trained = build_model(2)
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": trained.state_dict()}, path)
    loaded, started = initial_model(2, str(path))
    assert started == f"file {path}"
    for key, value in trained.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    other = build_model(1).state_dict()
    other["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)  # another network's layer
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(InputError, match="other.pt does not fit a 1-channel resnet18"):
        initial_model(1, str(tmp_path / "other.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a tensor file")
    with pytest.raises(InputError, match="junk.pt is not a torch state dict"):
        initial_model(1, str(tmp_path / "junk.pt"))


def test_imagenet_weights_come_from_torch_home_with_rgb_kernels_averaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    imagenet = resnet18(weights=None)  # stands in for the downloaded file: same shapes, same place
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(imagenet.state_dict(), checkpoints / Path(ResNet18_Weights.IMAGENET1K_V1.url).name)
    model, started = initial_model(2, "imagenet")
    assert started == f"imagenet (file {checkpoints / Path(ResNet18_Weights.IMAGENET1K_V1.url).name})"
    assert initial_model(2, "auto")[1] == started, "auto takes the cached file"
    expected = imagenet.conv1.weight.mean(dim=1)
    assert torch.allclose(model.conv1.weight[:, 0], expected) and torch.allclose(model.conv1.weight[:, 1], expected)
    assert torch.equal(model.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)
    assert model.fc.out_features == 2


def test_augmentation_keeps_shape_and_leaves_the_map_unbrightened() -> None:
    batch = torch.zeros(8, 2, 32, 32, dtype=torch.uint8)
    batch[:, 0] = 128
    out = augment(batch, torch.Generator().manual_seed(0))
    assert out.shape == (8, 2, 32, 32) and out.dtype == torch.float32
    # An empty probability map stays empty (only the radiograph channel gets brightness and contrast).
    assert torch.allclose(out[:, 1], torch.full_like(out[:, 1], -2.0))
    centre = out[:, 0, 12:20, 12:20]
    assert centre.std() > 0, "brightness differs between images"


def test_training_keeps_the_best_epoch_whatever_the_number_of_steps() -> None:
    from workers.classifier.train import TrainConfig, train
    from workers.learning_rate import warmup_cosine

    factor = warmup_cosine(10)
    assert factor(0) == 1.0 and factor(1) == 1.0 and 0 < factor(5) < 1 and factor(10) == pytest.approx(0)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.tensor([0, 1] * 12)
    everything = torch.arange(24)
    reports = []
    # 16 training images in batches of 8 for 5 epochs: 10 steps (torch's OneCycleLR failed on exactly that)
    trained = train(
        build_model(1), images, labels, everything[:16], everything[16:], TrainConfig(5, 8, patience=5),
        reports.append, lambda: None,
    )  # fmt: skip
    assert [report.epoch for report in reports] == [1, 2, 3, 4, 5]
    aucs = [report.val_auc for report in reports]
    assert trained.best_val_auc == max(aucs) and reports[trained.best_epoch - 1].val_auc == max(aucs)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_each_backbone_takes_the_input_channels_and_fits_imagenet_shaped_weights(backbone: str, tmp_path: Path) -> None:
    for channels in (1, 2):
        with torch.no_grad():
            assert build_model(channels, backbone).eval()(torch.rand(2, channels, 64, 64)).shape == (2, 2)
    constructor, _ = NETWORKS[backbone]
    imagenet = constructor(weights=None)  # the shapes of torchvision's file: three channels, 1000 classes
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pt")
    model, _ = initial_model(2, str(tmp_path / "imagenet.pt"), backbone)
    first = next(name for name, module in imagenet.named_modules() if isinstance(module, torch.nn.Conv2d))
    expected = imagenet.get_submodule(first).weight.mean(dim=1)
    assert torch.allclose(model.get_submodule(first).weight[:, 1], expected), "RGB kernels averaged per channel"
    deep = [key for key in imagenet.state_dict() if key.endswith("weight")][-3]  # a layer past the first
    assert torch.equal(model.state_dict()[deep], imagenet.state_dict()[deep])
    other = "densenet121" if backbone != "densenet121" else "resnet18"
    torch.save(build_model(2, other).state_dict(), tmp_path / "other.pt")
    with pytest.raises(InputError, match=f"other.pt does not fit a 2-channel {backbone}"):
        initial_model(2, str(tmp_path / "other.pt"), backbone)


def test_auto_weights_without_an_answer_start_from_scratch_and_say_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that takes the connection and never answers: the fetch gives up after its timeout."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/models/densenet121-a639ec97.pth"
        monkeypatch.setitem(NETWORKS, "densenet121", (NETWORKS["densenet121"][0], SimpleNamespace(url=url)))
        started_at = time.monotonic()
        model, started = initial_model(1, "auto", "densenet121", fetch_timeout_s=0.5)
        assert time.monotonic() - started_at < 5
    cache = tmp_path / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    assert started == f"none (no ImageNet file: {cache} is not cached and {url} gave no answer in 0.5 s (timed out))"
    assert isinstance(model, torch.nn.Module)
    with pytest.raises(InputError, match="ImageNet weights for densenet121 are not cached at .* make imagenet-weights"):
        initial_model(1, "imagenet", "densenet121", fetch_timeout_s=0.5)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"half a download")
    with pytest.raises(InputError, match=f"{cache} is not torchvision's ImageNet file for densenet121"):
        initial_model(1, "auto", "densenet121")
