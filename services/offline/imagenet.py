"""`make imagenet-weights [IMAGENET_DIR=imagenet]`: every classifier backbone's ImageNet file from torchvision,
fetched on a connected machine into IMAGENET_DIR/hub/checkpoints, as torch.hub caches them. On a server
without internet, that folder is TORCH_HOME (in .env): `--weights auto|imagenet` reads the files from there."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "imagenet").resolve()
    os.environ["TORCH_HOME"] = str(folder)  # before torch.hub reads it
    from workers.classifier.model import NETWORKS, imagenet_file

    for backbone, (_, weights) in NETWORKS.items():
        weights.get_state_dict(progress=False)  # fetched into TORCH_HOME/hub/checkpoints, or already there
        path = imagenet_file(backbone)
        print(f"{backbone:18} {path} ({path.stat().st_size / 1e6:.0f} MB)")
    print(f"on the server: TORCH_HOME={folder} in .env (copy the folder with the wheelhouse)")


if __name__ == "__main__":
    main()
