"""CPU work: reading the FracAtlas release, COCO -> nnU-Net conversion, splits."""
