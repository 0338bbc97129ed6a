"""`make bench-sr`: the super-resolution network trained for a fixed time on the release's large pictures,
its held-out PSNR/SSIM against bicubic and Lanczos (with the gain's 95% interval), and its upscaling
throughput beside bicubic's, on the same pictures in the same run (docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from shared.defaults import SUPERRES
from workers.superres.evaluate import classical_upscale, evaluate
from workers.superres.network import NetworkShape, parameter_count, save_model, upscale
from workers.superres.pairs import make_pairs
from workers.superres.train import TrainSettings, train

PROBE_ITERATIONS = 10


def _settings(iterations: int, args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(iterations, args.patch, args.batch_size, SUPERRES["learning_rate"], iterations, 0)


def _train_for(seconds: float, shape: NetworkShape, pairs, args: argparse.Namespace, device: torch.device):  # noqa: ANN001
    """Time a few iterations, then train from scratch for as many as fit in `seconds`."""
    with tempfile.TemporaryDirectory() as scratch:

        def run(iterations: int, name: str):  # noqa: ANN202
            settings = _settings(iterations, args)
            quiet = lambda *_: None  # noqa: E731
            return train(
                shape, settings, pairs.train, pairs.held_out[:1], Path(scratch) / name, device, quiet, quiet, quiet
            )

        started = time.perf_counter()
        run(PROBE_ITERATIONS, "probe.pth")
        per_iteration = (time.perf_counter() - started) / PROBE_ITERATIONS
        iterations = max(PROBE_ITERATIONS, int(seconds / per_iteration))
        started = time.perf_counter()
        trained = run(iterations, "run.pth")
        return trained.model, iterations, time.perf_counter() - started


def _pictures_per_s(function, pictures: list) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for picture in pictures:
        function(picture)
    return len(pictures) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, required=True, help="A FracAtlas release with large pictures.")
    parser.add_argument("--seconds", type=float, default=300, help="Training budget per scale.")
    parser.add_argument("--scales", default="2")
    parser.add_argument("--patch", type=int, default=SUPERRES["patch"])
    parser.add_argument("--batch-size", type=int, default=SUPERRES["batch_size"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--save", type=Path, help="Keep each network here as model_x<scale>.pth.")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads; budget {args.seconds:g} s/scale")
    rows = []
    for scale in (int(text) for text in args.scales.split(",")):
        pairs = make_pairs(args.source, scale, SUPERRES["small_long_side"], SUPERRES["min_long_side"], 0.2, 0)
        shape = NetworkShape(scale, SUPERRES["features"], SUPERRES["blocks"])
        model, iterations, seconds = _train_for(args.seconds, shape, pairs, args, device)
        if args.save:
            save_model(model, args.save / f"model_x{scale}.pth", {"run": "bench-sr"})
        figures = evaluate(model, pairs.held_out, device)
        smalls = [pair.small for pair in pairs.held_out]
        bicubic_rate = _pictures_per_s(lambda small: classical_upscale(small, scale, "bicubic"), smalls)  # noqa: B023
        network_rate = _pictures_per_s(lambda small: upscale(model, small, device), smalls)  # noqa: B023
        rows.append((scale, figures, iterations, seconds, bicubic_rate, network_rate))
        print(
            f"x{scale}: {parameter_count(model):,} parameters, {iterations} iterations in {seconds:.0f} s on "
            f"{len(pairs.train)} training pictures; {len(pairs.held_out)} held out"
        )
    print("\nscale | method | PSNR dB | SSIM | pictures/s")
    print("--- | --- | --- | --- | ---")
    for scale, figures, _iterations, _seconds, bicubic_rate, network_rate in rows:
        rates = {"bicubic": f"{bicubic_rate:.1f}", "lanczos": "", "network": f"{network_rate:.1f}"}
        for method in ("bicubic", "lanczos", "network"):
            psnr, ssim = figures[f"{method}_psnr"], figures[f"{method}_ssim"]
            print(f"x{scale} | {method} | {psnr:.2f} | {ssim:.4f} | {rates[method]}")
        for key in ("psnr", "ssim"):
            ci = figures[f"{key}_gain_over_bicubic_ci"] or {"low": float("nan"), "high": float("nan")}
            gain = figures[f"{key}_gain_over_bicubic"]
            print(f"x{scale} | network - bicubic {key.upper()} | {gain:+.4f} [{ci['low']:+.4f}, {ci['high']:+.4f}] | |")
        print(f"x{scale} | network / bicubic throughput | | | {network_rate / bicubic_rate:.3f}")


if __name__ == "__main__":
    main()
