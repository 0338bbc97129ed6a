"""The classifier's network: one of torchvision's backbones (ResNet18 by default), its first convolution
fitted to the input channels and a two-class head; and a trained classifier as its checkpoint holds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models

from shared.defaults import BACKBONES
from shared.errors import InputError

CLASSES = 2
# Each backbone's constructor and its ImageNet weights, as torchvision names them.
NETWORKS: dict[str, tuple[Callable[..., nn.Module], Any]] = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V2),
    "densenet121": (models.densenet121, models.DenseNet121_Weights.IMAGENET1K_V1),
    "convnext_tiny": (models.convnext_tiny, models.ConvNeXt_Tiny_Weights.IMAGENET1K_V1),
    "efficientnet_v2_s": (models.efficientnet_v2_s, models.EfficientNet_V2_S_Weights.IMAGENET1K_V1),
}
assert tuple(NETWORKS) == BACKBONES, "shared/defaults.py names the backbones the dispatcher offers"


def _first_convolution(model: nn.Module) -> str:
    """The name of the convolution that reads the RGB picture."""
    return next(name for name, module in model.named_modules() if isinstance(module, nn.Conv2d))


def build_model(channels: int, backbone: str = "resnet18") -> nn.Module:
    constructor, _ = NETWORKS[backbone]
    model = constructor(weights=None, num_classes=CLASSES)
    name = _first_convolution(model)
    parent, _, child = name.rpartition(".")
    rgb: nn.Conv2d = model.get_submodule(name)
    fitted = nn.Conv2d(channels, rgb.out_channels, rgb.kernel_size, rgb.stride, rgb.padding, bias=rgb.bias is not None)
    setattr(model.get_submodule(parent) if parent else model, child, fitted)
    return model


def adapt_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Fit another network's weights of the same backbone to `model`: RGB first-layer kernels are averaged into
    each input channel (a grey radiograph and the probability map are one-channel pictures), a head of another
    size is left at its fresh initialisation. Anything else that differs is left to load_state_dict to refuse."""
    fitted = dict(state)
    for key, mine in model.state_dict().items():
        theirs = fitted.get(key)
        if theirs is None or theirs.shape == mine.shape:
            continue
        if theirs.dim() == 4 and theirs.shape[0] == mine.shape[0] and theirs.shape[2:] == mine.shape[2:]:
            fitted[key] = theirs.mean(dim=1, keepdim=True).expand(mine.shape).clone()
        elif mine.shape[0] == CLASSES and theirs.shape[1:] == mine.shape[1:]:
            fitted[key] = mine  # the head
    return fitted


def imagenet_file(backbone: str) -> Path:
    """Where torch.hub keeps torchvision's ImageNet file of the backbone (TORCH_HOME/hub/checkpoints)."""
    _, weights = NETWORKS[backbone]
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _fetched(backbone: str, timeout_s: float) -> str | None:
    """The backbone's ImageNet file fetched into the cache; None, or why not. A server that gives no answer
    within `timeout_s` counts as unavailable: no job waits on a network that is not there."""
    import urllib.request

    _, weights = NETWORKS[backbone]
    try:
        urllib.request.urlopen(urllib.request.Request(weights.url, method="HEAD"), timeout=timeout_s).close()
    except OSError as error:
        return f"{weights.url} gave no answer in {timeout_s:g} s ({getattr(error, 'reason', error)})"
    imagenet_file(backbone).parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(weights.url, str(imagenet_file(backbone)), progress=False)
    return None


def _imagenet_state(backbone: str, timeout_s: float, required: bool) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The ImageNet state dict from the cache (fetched first where it can be) and what the run records; with
    `required` (--weights imagenet) a missing file is an error, else (auto) the run starts from scratch."""
    path = imagenet_file(backbone)
    if not path.exists() and (why := _fetched(backbone, timeout_s)):
        if required:
            raise InputError(
                f"ImageNet weights for {backbone} are not cached at {path} and cannot be fetched ({why}); copy "
                f"{path.name} there (TORCH_HOME sets the folder; make imagenet-weights fetches every backbone's) "
                "or use --weights none|PATH"
            )
        return None, f"none (no ImageNet file: {path} is not cached and {why})"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(
            f"{path} is not torchvision's ImageNet file for {backbone} ({str(error).splitlines()[0]}); delete it "
            "and fetch it again (make imagenet-weights)"
        ) from error
    return state, f"imagenet (file {path})"


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


def initial_model(
    channels: int, weights: str, backbone: str = "resnet18", fetch_timeout_s: float = 5.0
) -> tuple[nn.Module, str]:
    """A fresh model and what it started from, as the run records it: from scratch ('none'), from ImageNet
    ('imagenet'; 'auto' where the file is cached or can be fetched, else from scratch, saying why) or from a
    state dict file (a path)."""
    model = build_model(channels, backbone)
    if weights == "none":
        return model, "none"
    if weights in ("auto", "imagenet"):
        state, started = _imagenet_state(backbone, fetch_timeout_s, required=weights == "imagenet")
        if state is None:
            return model, started
    else:
        state, started = load_state(Path(weights)), f"file {weights}"
    try:
        model.load_state_dict(adapt_state_dict(state, model))
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise InputError(f"--weights {weights} does not fit a {channels}-channel {backbone}: {first_line}") from error
    return model, started


@dataclass(frozen=True)
class Classifier:
    """A trained classifier and what prediction needs to feed it as it was trained."""

    model: nn.Module
    backbone: str
    input: str  # IMAGE or IMAGE_SEG (shared/defaults.py)
    input_size: int
    threshold: float
    seg_run: int | None  # the nnU-Net run whose probability is its second channel
    working_size: int  # the ingest's: the square its pictures were letterboxed on
    square: bool  # that ingest squashed the pictures (the notebook's layout)


def load_classifier(path: Path) -> Classifier:
    content: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    backbone = content.get("backbone", "resnet18")  # older checkpoints: all ResNet18
    model = build_model(int(content["channels"]), backbone)
    model.load_state_dict(content["state_dict"])
    input_size = int(content["size"])  # the file's keys: "size" is the input size, "cache_size" the working size
    return Classifier(
        model,
        backbone,
        content["input"],
        input_size,
        float(content["threshold"]),
        content["seg_run"],
        int(content.get("cache_size", input_size)),  # a checkpoint from before the working size: squares
        bool(content.get("square", True)),
    )
