"""`dispatch`: the user's command line. It never imports torch, nnunetv2 or torchvision."""
