"""The fractured-or-not classifier (ResNet18 by default, or another of torchvision's backbones): its data split,
model, on-device training and metrics; prediction with it is workers/predict/'s."""
