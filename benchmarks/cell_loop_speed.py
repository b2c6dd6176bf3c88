"""What a custom recurrent cell costs: torch's fused nn.LSTM against an nn.LSTMCell stepped in
Python and textgen's PeepholeLSTM (``model.peephole=true``), whose gates are written out in Python.

    python benchmarks/cell_loop_speed.py --threads 1

Variants such as a peephole LSTM have no fused kernel in torch; they run as a cell stepped once per
character.  Prints the seconds of one forward and backward pass of each over a decoder-sized
batch, taking turns so that all see the same machine load.
"""

from __future__ import annotations

import argparse
import time

import torch

from textgen.models.peephole import PeepholeLSTM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=128, help="characters per sequence (data.target_chars)")
    parser.add_argument("--batch", type=int, default=64, help="sequences per batch (data.batch_size)")
    parser.add_argument("--input", type=int, default=128, help="input width (model.embedding)")
    parser.add_argument("--hidden", type=int, default=512, help="hidden width (model.hidden)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each, alternating")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    inputs = torch.randn(args.steps, args.batch, args.input)
    fused, cell = torch.nn.LSTM(args.input, args.hidden), torch.nn.LSTMCell(args.input, args.hidden)
    peephole = PeepholeLSTM(args.input, args.hidden)

    def run_fused() -> None:
        outputs, _ = fused(inputs)
        outputs.sum().backward()

    def run_cell() -> None:
        hidden = memory = torch.zeros(args.batch, args.hidden)
        outputs = []
        for step in inputs:
            hidden, memory = cell(step, (hidden, memory))
            outputs.append(hidden)
        torch.stack(outputs).sum().backward()

    def run_peephole() -> None:
        outputs, _ = peephole(inputs.transpose(0, 1))  # batch first
        outputs.sum().backward()

    runs = (("fused nn.LSTM", run_fused), ("nn.LSTMCell loop", run_cell), ("PeepholeLSTM", run_peephole))
    for _ in range(args.rounds):
        for name, run in runs:
            run()  # warm-up
            started = time.perf_counter()
            for _ in range(args.repeats):
                run()
            seconds = (time.perf_counter() - started) / args.repeats
            print(f"{name}: {seconds:.3f} s per forward+backward ({args.steps} steps x {args.batch} x {args.hidden})")


if __name__ == "__main__":
    main()
