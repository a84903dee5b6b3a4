"""Runs an hour on this machine's CPU: one process with every thread against one single-thread process per core,
both training the same --seeds batch of the default recipe with train.py itself.

    python -m research.throughput --data-dir ../shared/data                      # 2 runs of 15 epochs each way
    python -m research.throughput --data-dir ../shared/data --out results/benchmark/NAME.json

On a small CPU this network's convolutions are too small to keep two threads busy: the second thread of one
process adds a fraction of the first's speed, while two processes of one thread each keep both cores at work. This
measures it the way a user runs a batch: `python train.py --seeds LIST --out-dir D` once with all threads, then the
same command started once per core with OMP_NUM_THREADS=1, the processes sharing the seeds (train.py's batch). Each
way trains the same seeds from start-up to the last seeds.json; runs an hour = runs / wall-clock seconds x 3600.
Nothing else may run on the machine meanwhile. With --out, a benchmark/1 record (research/records.py).
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import train
from batch import provenance
from device import pick_precision
from errors import Fail, exit_status
from rundir import write_atomic

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return exit_status(lambda: throughput(argv), lambda e: print("\ninterrupted: nothing written", file=sys.stderr))


def parse_args(argv):
    p = train.ArgumentParser(prog="python -m research.throughput", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--epochs", type=int, default=train.Recipe.epochs, help="epochs of each run (default: %(default)s)")
    p.add_argument("--seeds", type=train.parse_seeds, default=None, metavar="LIST",
                   help="the batch each way trains (default: one seed per core, 1-N)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE.json",
                   help="also write the figures there as a benchmark/1 record (refused if the file exists)")
    args = p.parse_args(argv)
    if args.out and args.out.exists():
        raise Fail(f"--out {args.out} exists: pass a new file name (a record is never replaced)")
    return args


def throughput(argv):
    args = parse_args(argv)
    cores = os.cpu_count()
    seeds = args.seeds or list(range(1, cores + 1))
    device = torch.device("cpu")
    precision, why = pick_precision("auto", device)
    print(f"{provenance(device)['device_name']}, torch capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{cores} cores, precision {precision} ({why}); {len(seeds)} runs of {args.epochs} epochs each way")
    with tempfile.TemporaryDirectory() as tmp:
        setups = {"one process": timed_batch(args, seeds, Path(tmp) / "one", processes=1, threads=cores),
                  f"{cores} processes": timed_batch(args, seeds, Path(tmp) / "many", processes=cores, threads=1)}
    one, many = setups.values()
    speedup = many["runs_per_hour"] / one["runs_per_hour"]
    lines = [f"{name}: {s['processes']} x {s['threads']} thread(s), {s['runs']} runs in {s['seconds']:.0f} s: "
             f"{s['runs_per_hour']:.1f} runs an hour; final accuracies {s['final_test_acc']}"
             for name, s in setups.items()]
    lines.append(f"{cores} single-thread processes do {speedup:.2f}x the runs an hour of one {cores}-thread process")
    print("\n".join(lines))
    if args.out:
        record = {"schema": "benchmark/1", **provenance(device), "threads": None, "epochs": args.epochs,
                  "command": shlex.join(["python", "-m", "research.throughput", *argv]),
                  "note": f"runs an hour of train.py --seeds ({len(seeds)} seeds, precision auto: {precision}) as one "
                          f"process with {cores} threads and as {cores} single-thread processes sharing the batch",
                  "recipe_name": one["recipe_name"], "setups": setups, "speedup_runs_per_hour": round(speedup, 3),
                  "log": "\n".join(lines)}
        write_atomic(args.out, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
        print(f"wrote {args.out}")


def timed_batch(args, seeds, out_dir, processes, threads):
    """Start `processes` copies of one train.py --seeds command with `threads` threads each; wait for all of them."""
    command = [sys.executable, "train.py", "--data-dir", str(args.data_dir), "--out-dir", str(out_dir), "--device",
               "cpu", "--epochs", str(args.epochs), "--seeds", ",".join(map(str, seeds))]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(processes)]
    errors = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise Fail(f"train.py failed: {next(e for p, e in zip(procs, errors) if p.returncode).strip()[-300:]}")
    record = json.loads((out_dir / "seeds.json").read_text())
    return {"processes": processes, "threads": threads, "recipe_name": record["recipe_name"],
            "precision": record["precision"],
            "runs": len(record["runs"]), "seconds": round(seconds, 1),
            "runs_per_hour": round(3600 * len(record["runs"]) / seconds, 2),
            "final_test_acc": [r["test_acc"][-1] for r in record["runs"]],
            "run_seconds": [round(r["seconds"], 1) for r in record["runs"]]}


if __name__ == "__main__":
    sys.exit(main())
