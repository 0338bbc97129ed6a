"""torchvision's ResNet18 with its first convolution fitted to the input channels and a two-class head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from shared.errors import InputError

CLASSES = 2


def build_model(channels: int) -> nn.Module:
    model = resnet18(weights=None, num_classes=CLASSES)
    model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def adapt_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Fit another ResNet18's weights to `model`: RGB first-layer kernels are averaged into each input
    channel (a grey radiograph and the probability map are one-channel pictures), a head of another
    size is left at its fresh initialisation."""
    own = model.state_dict()
    fitted = dict(state)
    conv = fitted.get("conv1.weight")
    wanted = own["conv1.weight"].shape
    if conv is not None and conv.shape != wanted and conv.shape[0] == wanted[0]:
        fitted["conv1.weight"] = conv.mean(dim=1, keepdim=True).expand(wanted).clone()
    for key in ("fc.weight", "fc.bias"):
        if key in fitted and fitted[key].shape != own[key].shape:
            fitted[key] = own[key]
    return fitted


def _imagenet_state() -> dict[str, torch.Tensor]:
    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except Exception as error:  # no network or no cache: the message says where the file belongs
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise InputError(
            f"ImageNet weights for resnet18 are not cached at {cache} and cannot be fetched ({error}); "
            f"copy {Path(weights.url).name} there (TORCH_HOME sets the folder) or use --weights none|PATH"
        ) from error


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from `path`: a plain one, or a classifier checkpoint of this project."""
    try:
        content: Any = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"--weights {path} does not exist; pass a state dict saved with torch.save") from None
    except Exception as error:
        raise InputError(f"--weights {path} is not a torch state dict ({error})") from error
    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise InputError(f"--weights {path} holds no state dict of tensors")
    return state


def initial_model(channels: int, weights: str) -> nn.Module:
    """A fresh model: from scratch ('none'), from ImageNet ('imagenet') or from a state dict file (a path)."""
    model = build_model(channels)
    if weights == "none":
        return model
    state = _imagenet_state() if weights == "imagenet" else load_state(Path(weights))
    try:
        model.load_state_dict(adapt_state_dict(state, model))
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise InputError(f"--weights {weights} does not fit a {channels}-channel ResNet18: {first_line}") from error
    return model
