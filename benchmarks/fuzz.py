"""Fuzz fxprune with many random CNNs (the generator of fxprune/testing/fuzz_generate.py, without hypothesis).

Every example draws a model, a ratio in [0, 0.9] and ``round_to`` in {None, 2, 4} from
its own seeded ``random.Random``, so one example is reproduced with ``--seed S --only I``.
The property is the one of tests/test_fuzz.py: exact mode passes the oracle with the
model's output shapes, default mode runs with them, or compile raises ``FxPruneError``.

Prints how many examples passed (and how many pruned nothing), the typed errors grouped
by message, and every failure with a runnable reproducer. Exits 1 if anything failed.

Example::

    python3 benchmarks/fuzz.py                       # 10,000 examples, seed 0
    python3 benchmarks/fuzz.py --examples 500 --seed 3 --jobs 2
    python3 benchmarks/fuzz.py --seed 3 --only 117   # one example, with its traceback
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # this checkout's fxprune, not an installed one
    sys.path.insert(0, str(REPO_ROOT))

from fxprune.testing.fuzz_check import FuzzFailure, check_example  # noqa: E402
from fxprune.testing.fuzz_generate import RandomDraw, generate  # noqa: E402
from fxprune.testing.fuzz_models import NetSpec  # noqa: E402


def draw_example(seed: int, index: int) -> tuple[NetSpec, float, int | None]:
    rng = random.Random(f"{seed}-{index}")
    spec = generate(RandomDraw(rng))
    return spec, round(rng.uniform(0.0, 0.9), 3), rng.choice([None, 2, 4])


def reproducer(spec: NetSpec, ratio: float, round_to: int | None) -> str:
    return ("from fxprune.testing.fuzz_check import check_example\n"
            "from fxprune.testing.fuzz_models import NetSpec, Op\n"
            f"spec = {spec.code()}\n"
            f"check_example(spec, ratio={ratio!r}, round_to={round_to!r})")


def run_one(job: tuple[int, int]) -> tuple[int, str, str | None]:
    """(index, outcome, failure report or None) for one example."""
    seed, index = job
    spec, ratio, round_to = draw_example(seed, index)
    try:
        return index, check_example(spec, ratio, round_to), None
    except FuzzFailure as failure:
        cause = failure.__cause__
        where = "".join(traceback.format_exception(cause)[-4:]) if cause is not None else ""
        return index, "failed", f"{failure}\n{where}\n{reproducer(spec, ratio, round_to)}"


def _init_worker() -> None:
    torch.set_num_threads(1)  # tiny convolutions: thread hand-offs cost more than they save


def normalised(message: str) -> str:
    """A typed error's message with node names and numbers blanked, so alike errors group."""
    return re.sub(r"\d+", "N", re.sub(r"%\w+", "%node", message))[:160]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--only", type=int, default=None, help="run one example index, raising its failure")
    args = parser.parse_args(argv)
    _init_worker()
    if args.only is not None:
        spec, ratio, round_to = draw_example(args.seed, args.only)
        print(reproducer(spec, ratio, round_to))
        print(check_example(spec, ratio, round_to))
        return 0
    jobs = [(args.seed, i) for i in range(args.examples)]
    outcomes: Counter[str] = Counter()
    typed: Counter[str] = Counter()
    typed_examples: dict[str, list[int]] = {}
    failures: list[tuple[int, str]] = []
    start = time.perf_counter()
    pool = multiprocessing.Pool(args.jobs, initializer=_init_worker) if args.jobs > 1 else None
    results = pool.imap_unordered(run_one, jobs, chunksize=4) if pool is not None else map(run_one, jobs)
    try:
        for done, (index, outcome, failure) in enumerate(results, 1):
            if outcome.startswith("typed: "):
                outcomes["typed error"] += 1
                message = normalised(outcome[len("typed: "):])
                typed[message] += 1
                typed_examples.setdefault(message, []).append(index)
            else:
                outcomes[outcome] += 1
            if failure is not None:
                failures.append((index, failure))
                print(f"FAILURE in example {index} (--seed {args.seed} --only {index}):\n{failure}\n", flush=True)
            if done % 500 == 0:
                print(f"... {done}/{len(jobs)} examples, {len(failures)} failures, "
                      f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    seconds = time.perf_counter() - start
    print(f"\n{len(jobs)} examples (seed {args.seed}) in {seconds:.0f} s")
    passed = outcomes["passed"] + outcomes["passed, nothing pruned"]
    print(f"  passed         {passed:>6}  ({outcomes['passed, nothing pruned']} of them pruned nothing)")
    print(f"  typed errors   {outcomes['typed error']:>6}")
    for message, count in typed.most_common():
        print(f"      {count:>6} x {message}\n               e.g. --only {sorted(typed_examples[message])[:5]}")
    listed = f"  (examples {sorted(i for i, _ in failures)})" if failures else ""
    print(f"  failures       {len(failures):>6}{listed}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
