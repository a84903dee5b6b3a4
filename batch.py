"""A --seeds batch: a folder per seed (seed_N, one whole run each) and seeds.json, the batch's record in the schema of
results/ (research/records.py). Any stop loses at most the epoch in progress: the same command continues the batch,
and several processes share it. Each seed's folder is locked by the process that trains it (rundir.claimed; the OS
drops the lock of a process that dies, however it dies), a seed is finished once its metrics.json has every epoch,
and every process rewrites seeds.json from the seed folders when it stops, so the one that ends last writes it whole.
"""
import dataclasses
import datetime
import json
import shlex
import statistics
import subprocess
from pathlib import Path

import torch

from device import device_name
from checkpoint import differing_flags
from errors import Fail
from plots import plot_seeds
from rundir import RUN_FILES, claimed, locked, prepare_out_dir, remove, write_atomic

RECORD = "seeds.json"
RECORD_LOCK = ".seeds.lock"  # held while a process reads the seed folders and rewrites seeds.json


class Batch:
    def __init__(self, out_dir, recipe, seeds, dry_run=False):
        self.out_dir, self.recipe, self.seeds, self.dry_run = Path(out_dir), recipe, seeds, dry_run

    def folder(self, seed):
        return self.out_dir / f"seed_{seed}"

    def finished(self, seed):
        """Has this seed's run ended? Its metrics.json has every epoch (train_run writes model.pt before it)."""
        metrics = read_metrics(self.folder(seed))
        return metrics is not None and len(metrics["epochs"]) == (1 if self.dry_run else self.recipe.epochs)

    def check(self, overwrite):
        """Refuse a batch of another recipe (or a dry run's) in this folder, or clear it for --overwrite."""
        prepare_out_dir(self.out_dir)
        with locked(self.out_dir, name=RECORD_LOCK, wait=True):
            if overwrite:
                return self.clear()
            saved = read_json(self.out_dir / RECORD)
            if saved is not None and saved["recipe"] != dataclasses.asdict(self.recipe):
                theirs, ours = differing_flags(saved["recipe"], dataclasses.asdict(self.recipe))
                raise Fail(f"{self.out_dir} holds a --seeds batch trained with {theirs}, this command has {ours}: "
                           "pass its flags to continue it, another --out-dir, or add --overwrite to replace it")
            for folder in self.out_dir.glob("seed_*"):
                metrics = read_metrics(folder)
                if metrics is not None and metrics.get("dry_run", False) != self.dry_run:
                    what = "a --dry-run batch" if self.dry_run is False else "a batch of whole runs"
                    raise Fail(f"{folder} holds {what}: pass another --out-dir, or add --overwrite to replace it")

    def clear(self):
        """--overwrite: remove the files of this batch's seeds and its record, unless another process trains one."""
        busy = [seed for seed in self.seeds if self.folder(seed).is_dir() and held_elsewhere(self.folder(seed))]
        if busy:
            raise Fail(f"--overwrite: seed {busy[0]} of {self.out_dir} is being trained by another train.py: "
                       "drop --overwrite to share the batch, or wait for it to end")
        remove([self.folder(s) / name for s in self.seeds for name in RUN_FILES] + [self.out_dir / RECORD])

    def claimed_seeds(self):
        """Yield (seed, folder) for each seed that is neither finished nor trained by another process, holding the
        folder's lock until the next one is asked for; each pass starts again at the first seed, so a seed that a
        killed process leaves behind is taken up too."""
        while True:
            for seed in self.seeds:
                if self.finished(seed):
                    continue
                with claimed(prepare_out_dir(self.folder(seed))) as mine:
                    if mine and not self.finished(seed):  # another process may have finished it meanwhile
                        yield seed, self.folder(seed)
                        break
            else:
                return

    def write_record(self, record, target):
        """seeds.json (and seeds.png): `record` with the runs of every finished seed in the folder, this command's
        seeds first, and the seeds of this command that are not finished."""
        with locked(self.out_dir, name=RECORD_LOCK, wait=True):
            others = sorted(int(p.name.removeprefix("seed_")) for p in self.out_dir.glob("seed_*")
                            if p.name.removeprefix("seed_").lstrip("-").isdigit())
            seeds = self.seeds + [s for s in others if s not in self.seeds]
            done = [s for s in seeds if self.finished(s)]
            record = {**record, "runs": [run for s in done for run in seed_runs(read_metrics(self.folder(s)))],
                      "seeds_not_run": [s for s in self.seeds if s not in done]}
            write_atomic(self.out_dir / RECORD, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
            if record["runs"]:
                plot_seeds(record, self.out_dir / "seeds.png", target)
        return record


def held_elsewhere(folder):
    with claimed(folder) as mine:
        return not mine


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_metrics(folder):
    return read_json(folder / "metrics.json")


# ---------------------------------------------------------------------------------------------
# the record

def seeds_record(recipe, recipe_name, device, precision_why, argv):
    """Where, with what and how the runs were made: every field but the runs themselves."""
    return {"schema": "runs/1", "title": f"train.py --seeds on {device_name(device)}", "recipe_name": recipe_name,
            "recipe": dataclasses.asdict(recipe), "evaluated_on": "validation" if recipe.validation else "test",
            **provenance(device), "precision": recipe.precision, "precision_why": precision_why,
            "seeds_drawn": "given on the command line", "command": shlex.join(["python", "train.py", *argv]),
            "note": "", "runs": []}


def provenance(device):
    """The date, code, machine and torch of a record in results/ (research/benchmark.py writes them too)."""
    return {"date": datetime.date.today().isoformat(), "commit": git_commit(), "device": device.type,
            "device_name": device_name(device),
            "torch_capability": torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else None,
            "torch": str(torch.__version__), "threads": torch.get_num_threads()}


def seed_runs(metrics):
    """A finished run as the record's runs: one, or one per copy of the network."""
    epochs = metrics["epochs"]
    if metrics["copies"] == 1:
        return [{"seed": metrics["seed"], "copy": None, "test_acc": [e["test_acc"] for e in epochs],
                 "test_loss": [e["test_loss"] for e in epochs], "seconds": metrics["total_seconds"]}]
    return [{"seed": metrics["seed"], "copy": r["copy"], "test_acc": r["test_accs"], "test_loss": None,
             "seconds": metrics["total_seconds"]} for r in metrics["copy_runs"]]


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def format_seed_summary(record, target):
    runs = [(r["seed"] if r["copy"] is None else f"{r['seed']}.{r['copy']}", r) for r in record["runs"]]
    finals = [r["test_acc"][-1] for _, r in runs]
    lines = ["", f"{'seed':>6} {'final %':>8} {'best %':>8} {'epochs>=' + str(target):>14} {'seconds':>8}"]
    lines += [f"{name:>6} {r['test_acc'][-1]:>8.2f} {max(r['test_acc']):>8.2f} "
              f"{sum(a >= target for a in r['test_acc']):>14} {r['seconds']:>8.1f}" for name, r in runs]
    if finals:
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        lines.append(f"final: mean {statistics.mean(finals):.3f} +- {spread:.3f}, min {min(finals):.2f}; "
                     f"{sum(f >= target for f in finals)}/{len(finals)} runs ended >= {target:.2f} %")
    if record["seeds_not_run"]:
        lines.append(f"not finished: seeds {', '.join(map(str, record['seeds_not_run']))}")
    return "\n".join(lines)
