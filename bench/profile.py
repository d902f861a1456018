"""Summarise a py-spy raw profile (``LEDGERLINE_BENCH_PROFILE=1`` writes them): the share of
samples spent in each function, inclusive (anywhere on the stack) and exclusive (on top).

    python -m bench.profile bench/results/profile-commands.txt [--top 30] [--match TEXT] [--seconds S]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from bench.measure import PROFILE_RATE


def summarise(path: Path, top: int, match: str, seconds: float | None = None) -> str:
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [frame.split(" (")[0] + " (" + frame.rsplit("/", 1)[-1] for frame in stack.split(";")]
        samples = int(count)
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        exclusive[frames[-1]] += samples
    lines = [f"{path.name}: {total} samples"]
    if seconds:  # with --gil, a sample is taken only while some thread holds the GIL
        lines[0] += f", GIL busy {100 * total / (PROFILE_RATE * seconds):.0f}% of {seconds:g} s"
    for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
        lines.append(f"-- {title}")
        shown = [(frame, n) for frame, n in counter.most_common() if match in frame][:top]
        lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in shown]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="", help="only frames containing this text")
    parser.add_argument("--seconds", type=float, help="how long it sampled: tells how busy the GIL was")
    args = parser.parse_args()
    print(summarise(args.path, args.top, args.match, args.seconds))


if __name__ == "__main__":
    main()
