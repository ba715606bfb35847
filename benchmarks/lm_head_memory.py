"""Peak memory of log-probs through a language-model head: the whole (N x vocab) logits against row chunks.

    python benchmarks/lm_head_memory.py [--rows 4096] [--hidden 256] [--vocabs 32768 131072] [--chunks 1024 256]

Forward and backward of `token_logprobs(head(hidden), targets)` (the logits whole) and of
`litforge.losses.chunked_token_logprobs(hidden, head, targets, chunk)` (chunks of rows, logits recomputed in the
backward), fp32 on CPU, one case per fresh process at one thread. Peak memory is the process's maximum resident set
size after the backward minus its resident size just before the forward (inputs, head and preallocated gradients
already in place), so it counts what the log-probs and their gradients add.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys


def resident_mib() -> float:
    """This process's resident set size now, in MiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def measure(rows: int, hidden_size: int, vocab: int, chunk: int) -> float:
    """MiB the forward and backward add to the process's peak (chunk 0: the whole logits)."""
    import torch
    from torch import nn

    from litforge.losses import chunked_token_logprobs, token_logprobs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    head = nn.Linear(hidden_size, vocab, bias=False)
    hidden = torch.randn(rows, hidden_size, requires_grad=True)
    targets = torch.randint(vocab, (rows,))
    head.weight.grad, hidden.grad = torch.zeros_like(head.weight), torch.zeros_like(hidden)
    before = resident_mib()
    if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 > before + 1:
        raise RuntimeError("the process peaked before the measured part; the delta would be wrong")
    if chunk:
        logprobs = chunked_token_logprobs(hidden, head, targets, chunk=chunk)
    else:
        logprobs = token_logprobs(head(hidden), targets)
    logprobs.sum().backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocabs", type=int, nargs="+", default=[32768, 131072])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1024, 256])
    parser.add_argument("--case", type=int, nargs=2, help=argparse.SUPPRESS)  # (vocab, chunk): run one, print MiB
    args = parser.parse_args()
    if args.case:
        print(measure(args.rows, args.hidden, *args.case))
        return
    print(f"rows {args.rows}, hidden {args.hidden}, fp32, forward + backward: peak MiB above the inputs")
    print(f"{'vocab':>8} {'whole':>8} " + " ".join(f"{f'chunk {chunk}':>11}" for chunk in args.chunks))
    for vocab in args.vocabs:
        cells = []
        for chunk in [0, *args.chunks]:
            command = [sys.executable, __file__, "--rows", str(args.rows), "--hidden", str(args.hidden), "--case",
                       str(vocab), str(chunk)]
            cells.append(float(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
        whole = cells[0]
        print(f"{vocab:>8} {whole:>8.0f} " + " ".join(f"{cell:>5.0f} ({cell / whole:.2f})" for cell in cells[1:]))


if __name__ == "__main__":
    main()
