"""The ResNet18 fracture classifier: its data split, model, on-device training, metrics and prediction."""
