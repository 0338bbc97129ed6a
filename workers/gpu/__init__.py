"""GPU work: nnU-Net v2 fold training, ensemble prediction and evaluation; the ResNet18 classifier."""
