"""A trained classifier applied to new pictures as it was trained: each working picture (and nnU-Net's
fracture probability map, for image+seg) letterboxed onto the cache's square, brought to the input size."""

from __future__ import annotations

import numpy as np
import torch

from shared.defaults import IMAGE_SEG
from workers.classifier.input_size import resized as at_input_size
from workers.classifier.model import Classifier
from workers.classifier.train import predict_scores
from workers.device import torch_device
from workers.imaging.geometry import letterbox


def fracture_scores(classifier: Classifier, working: list[np.ndarray], fracture_maps: list[np.ndarray]) -> np.ndarray:
    """Each picture's fracture probability; `fracture_maps` (0..1, at the working size) are read only where
    the classifier takes image+seg."""
    channels = [np.stack([letterbox(pixels, classifier.working_size) for pixels in working])]
    if classifier.input == IMAGE_SEG:
        probabilities = [np.rint(fracture * 255).astype(np.uint8) for fracture in fracture_maps]
        channels.append(np.stack([letterbox(p, classifier.working_size) for p in probabilities]))
    device = torch_device()
    batch = at_input_size(torch.from_numpy(np.stack(channels, 1)).to(device), classifier.input_size)
    return predict_scores(classifier.model.to(device), batch, device)
