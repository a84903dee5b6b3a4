"""Train the 7,830-parameter MNIST network (model.py) to >= 99.4 % test accuracy in 15 epochs.

    python train.py                       # one run with the recipe below; out/model.pt is the trained network
    python train.py --lr 0.03 --epochs 20 # change any knob of the recipe from the command line
    python train.py --seeds 1-10          # one run per seed, then a summary; the same command continues it
    python train.py --resume out/checkpoint.pt

Read top to bottom: the recipe, then main(), one run (train_run), one epoch (train_epoch), testing, several
seeds (batch.py keeps their folder and record), and the command line (device.py picks device and precision). MNIST lives on the training device as four tensors; each epoch draws batches from
a shuffled index permutation and augments a whole batch at once with one affine warp (rotation, shift, scale).
The weights that are tested after the first learning-rate decay are an exponential moving average (EMA) of the
trained ones, with BatchNorm statistics re-estimated for them: the average sits nearer the centre of the
valley that SGD bounces around in (its measured effect: RESULTS.md, History of the recipe).
"""
import argparse
import dataclasses
import json
import math
import re
import shlex
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from tqdm import tqdm

from batch import Batch, format_seed_summary, seeds_record
from checkpoint import load_checkpoint, save_checkpoint, save_model
from device import DEVICES, PRECISIONS, autocast, pick_device, pick_precision
from errors import Fail, exit_status
from mnist import augment, hold_out, load_mnist
from model import Net, count_params
from plots import plot_curves
from rundir import locked, prepare_out_dir, refuse_to_overwrite, write_atomic

TARGET = 99.40  # % test accuracy a run must end at


# ---------------------------------------------------------------------------------------------
# The recipe: every knob that changes a run's numbers, declared once. The command-line flags, their range
# checks, the checkpoint's same-recipe check and the recipe search (research/sweep.py) all read these fields.

def knob(default, help, valid=None, study=False, choices=None):
    """A recipe field: its default, its --help text, its valid range ('> 0', '>= 0' or '[0, 1)'), and whether only
    recipe studies change it (its flag is then listed apart in --help)."""
    return field(default=default, metadata={"help": help, "valid": valid, "study": study, "choices": choices})


@dataclass
class Recipe:
    epochs: int = knob(15, "number of epochs", "> 0")
    batch_size: int = knob(64, "training batch size", "> 0")
    lr: float = knob(0.05, "SGD learning rate", "> 0")
    momentum: float = knob(0.9, "SGD momentum", "[0, 1)")
    weight_decay: float = knob(1e-3, "L2 weight decay", ">= 0")
    step_size: int = knob(6, "StepLR: epochs between learning-rate decays", "> 0")
    gamma: float = knob(0.2, "StepLR: decay factor", "> 0")
    dropout: float = knob(0.0, "dropout after each conv block", "[0, 1)")
    rotation: float = knob(7.0, "max rotation in degrees", ">= 0")
    shift: float = knob(1.0, "max shift in pixels", ">= 0")
    scale: float = knob(0.1, "max relative size change: 0.1 draws sizes in 0.9-1.1", "[0, 1)")
    # averaging the first, high learning rate's weights only blurs them: by default the epochs after its decay
    average_epochs: int = knob(None, "in the last K epochs, test a moving average of the weights (updated after "
                                     "every step: --ema), its BatchNorm statistics re-estimated; 0: test the trained "
                                     "weights (default: the epochs after the first decay, 9 of 15)", ">= 0")
    precision: str = knob("auto", "bf16 autocast or plain fp32; auto: bf16 where the device computes it natively "
                                  "(CUDA compute capability >= 8.0, CPUs with AMX or AVX512-BF16), else fp32",
                          choices=PRECISIONS)
    ema: float = knob(0.999, "the average is an EMA of the weights after every step, with this decay; "
                             "0: equal-weight snapshots instead", "[0, 1)", study=True)
    snapshots: int = knob(1, "with --ema 0: snapshots per averaged epoch, evenly spaced", "> 0", study=True)
    bn_images: int = knob(10000, "training images that re-estimate the average's BatchNorm statistics", "> 0",
                          study=True)
    nesterov: bool = knob(False, "Nesterov momentum", study=True)
    bn_decay: bool = knob(True, "weight decay on BatchNorm weights and biases too", study=True)
    label_smoothing: float = knob(0.0, "cross-entropy label smoothing", "[0, 1)", study=True)
    copies: int = knob(1, "train K independent copies of the network side by side (grouped convolutions), each "
                          "with its own initialisation, batch order and augmentation: on a GPU about the time of "
                          "one run", "> 0", study=True)
    validation: int = knob(0, "hold out N training images (a fixed draw) and report on them instead of the test "
                              "set: recipe search without the test set", ">= 0", study=True)

    def __post_init__(self):
        if self.average_epochs is None:
            self.average_epochs = max(self.epochs - self.step_size, 0)
        for f in dataclasses.fields(self):
            check_value(f.name, getattr(self, f.name), f.metadata["valid"])


BN_BATCH_SIZE = 1000   # batches that re-estimate BatchNorm statistics (the statistics depend on it)
TEST_BATCH_SIZE = 500  # on a CPU 1.5-2x as fast as 1000 (its tensors fit the caches); the same numbers
LOG_INTERVAL = 20      # steps between progress-bar refreshes (each one waits for the device)
INT64_MAX = 2**63 - 1  # torch takes sizes and counts as 64-bit integers
MAX_SEEDS = 1000       # in one --seeds run (each seed is a full run: minutes each)


def check_value(name, value, valid):
    flag = "--" + name.replace("_", "-")
    if isinstance(value, float) and not math.isfinite(value):  # inf passes every range below
        raise Fail(f"{flag} must be a finite number (got {value})")
    if type(value) is int and value > INT64_MAX:  # torch overflows on sizes beyond 64 bits
        raise Fail(f"{flag} must be at most {INT64_MAX} (got {value})")
    ok = {None: True, "> 0": value > 0, ">= 0": value >= 0, "[0, 1)": 0 <= value < 1}[valid] if valid else True
    if not ok:
        raise Fail(f"{flag} must be {'in ' if valid.startswith('[') else ''}{valid} (got {value})")


# ---------------------------------------------------------------------------------------------
# the script

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return exit_status(lambda: train(argv), lambda e: print_resume_hint(argv, getattr(e, "checkpoint", None)))


def train(argv):
    recipe, opts = parse_args(argv)
    device = pick_device(opts.device)
    recipe.precision, precision_why = pick_precision(recipe.precision, device)
    print(f"precision: {recipe.precision} ({precision_why})")
    out_dir = prepare_out_dir(opts.out_dir)
    settings = dict(dry_run=opts.dry_run, test_batch_size=opts.test_batch_size, log_interval=opts.log_interval,
                    precision_why=precision_why)  # what train_run takes besides the recipe: the same for every seed
    if opts.seeds:  # several processes may share a batch: each locks the seed it trains
        train_seeds(recipe, opts.seeds, mnist_data(opts, recipe, device), device, out_dir, argv,
                    overwrite=opts.overwrite, **settings)
        return
    with locked(out_dir):
        refuse_to_overwrite(opts, out_dir)
        train_run(recipe, opts.seed, mnist_data(opts, recipe, device), device, out_dir=out_dir, resume=opts.resume,
                  **settings)


def mnist_data(opts, recipe, device):
    data = load_mnist(opts.data_dir, device)
    return hold_out(data, recipe.validation) if recipe.validation else data


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run, carrying the checkpoint to resume from (None before the first epoch ends)
    and the exit code: 130 for Ctrl-C, 143 for SIGTERM, as a shell reports a process those signals killed."""

    def __init__(self, checkpoint, code=130):
        super().__init__()
        self.checkpoint, self.code = checkpoint, code


def stop_on_sigterm(signum, frame):
    """SIGTERM (docker stop, Kubernetes, Slurm) stops like Ctrl-C. Without a handler Python dies without a word,
    and as a container's PID 1 it ignores SIGTERM until docker stop kills it 10 s later."""
    raise Interrupted(None, code=143)


# ---------------------------------------------------------------------------------------------
# one run

def train_run(recipe, seed, data, device, out_dir=None, resume=None, log=True, on_epoch=None, dry_run=False,
              test_batch_size=TEST_BATCH_SIZE, log_interval=LOG_INTERVAL, precision_why=None):
    """One training run of `recipe` from `seed`; returns its metrics (each epoch's record, the summary figures).
    With out_dir: after each epoch a checkpoint and metrics.json there, model.pt after the last one, then curves.png.
    log: print the documented log. on_epoch(record, run), if given, sees each epoch as it ends (the recipe search
    reports it)."""
    if log:
        print_summary_table()
        print("---------------------------")
        print("device: ", device)
        print("---------------------------")
    run = new_run(recipe, seed, device)
    metrics = new_metrics(recipe, seed, device, run.model, precision_why, dry_run)
    metrics["epochs"] = run.records  # the one list: each epoch's record joins it as the epoch ends
    if resume:
        load_checkpoint(resume, run, recipe, seed, device)
        if run.epoch >= recipe.epochs:
            raise Fail(f"--resume {resume}: that run already finished its {recipe.epochs} epochs, nothing is left "
                       "to continue (its metrics.json has the results): start a new run without --resume")
    last_checkpoint = resume
    end = 1 if dry_run else recipe.epochs
    try:
        while run.epoch < end:
            record = train_epoch(run, recipe, data, device, log, dry_run, test_batch_size, log_interval)
            finish_metrics(metrics)
            if out_dir:  # model.pt before metrics.json: a metrics.json with every epoch means a finished run
                if run.epoch == end and recipe.copies == 1:  # K copies are one grouped network: no model.pt
                    save_model(out_dir / "model.pt", tested_network(run, recipe))
                save_checkpoint(out_dir / "checkpoint.pt", run, recipe, seed, metrics)
                write_atomic(out_dir / "metrics.json", lambda tmp: tmp.write_text(json.dumps(metrics, indent=2)))
                last_checkpoint = out_dir / "checkpoint.pt"
            if on_epoch:
                on_epoch(record, run)
        if out_dir:
            plot_curves(metrics, out_dir / "curves.png", TARGET)
        if log and recipe.copies > 1:
            print(format_copies(metrics))
    except KeyboardInterrupt as e:
        raise Interrupted(last_checkpoint, getattr(e, "code", 130))
    except (Fail, MemoryError, RuntimeError) as e:  # a NaN loss, a full disk, out of memory: name what is left
        e = e if isinstance(e, Fail) else out_of_memory(e, recipe, test_batch_size)
        raise Fail(f"{e}; last good checkpoint: {last_checkpoint}", e.code) if last_checkpoint else e
    return metrics


@dataclass
class Run:
    """What a run carries from epoch to epoch: the network, its optimizer, schedule and weight average, the next
    epoch and each finished epoch's record."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    averaged: AveragedModel = None
    epoch: int = 0
    records: list = field(default_factory=list)


def tested_network(run, recipe):
    """The network the last finished epoch tested: the weight average (its BatchNorm statistics re-estimated there)
    or the trained weights."""
    return run.averaged.module if averages(run, recipe, run.epoch - 1) else run.model


def averages(run, recipe, epoch):
    """Does `epoch` update and test the weight average? The last average_epochs epochs do."""
    return run.averaged is not None and epoch >= recipe.epochs - recipe.average_epochs


def new_run(recipe, seed, device):
    """The seeded network, SGD with StepLR, and (if the recipe averages) the weight average."""
    torch.manual_seed(seed)
    model = Net(dropout=recipe.dropout, copies=recipe.copies).to(device)
    params = model.parameters() if recipe.bn_decay else [  # without: decay only the conv weights
        {"params": [p for p in model.parameters() if p.ndim > 1]},
        {"params": [p for p in model.parameters() if p.ndim == 1], "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                                weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    ema = get_ema_multi_avg_fn(recipe.ema) if recipe.ema else None  # None: equal weights
    averaged = AveragedModel(model, multi_avg_fn=ema) if recipe.average_epochs else None
    return Run(model, optimizer, scheduler, averaged)


# ---------------------------------------------------------------------------------------------
# one epoch

def train_epoch(run, recipe, data, device, log=True, dry_run=False, test_batch_size=TEST_BATCH_SIZE,
                log_interval=LOG_INTERVAL):
    """One pass over a fresh permutation of the training set, then the test; prints the epoch's documented log
    (if log), steps the schedule, and returns the epoch's record (also appended to run.records)."""
    t0 = time.perf_counter()
    say = print if log else lambda *a: None
    model, optimizer, epoch, k = run.model, run.optimizer, run.epoch, recipe.copies
    lr = optimizer.param_groups[0]["lr"]
    say("--------------------------------------------")
    say(f"EPOCH: {epoch}")
    say(f"Learning Rate = {lr:.6f}")
    model.train()
    # each copy its own order (k = 1: the one permutation, drawn exactly as without copies)
    n = len(data.train_x)
    batches = torch.stack([torch.randperm(n, device=device) for _ in range(k)]).split(recipe.batch_size, dim=1)
    batches = batches[:1] if dry_run else batches
    averaging = averages(run, recipe, epoch)
    joins_average = averaging_steps(len(batches), recipe) if averaging else set()
    loss_sum = torch.zeros((), device=device)  # running sums stay on the device: read back every log_interval
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    bar = tqdm(batches, file=sys.stdout, disable=not log)
    for batch_id, idx in enumerate(bar):
        x = side_by_side(augment(data.train_x[idx.flatten()], recipe.rotation, recipe.shift, recipe.scale), k)
        y = data.train_y[idx.T]
        with autocast(device, recipe.precision):
            output = model(x)
        # output is log-probs; x k: every copy's gradient is that of its own batch's mean loss
        loss = F.cross_entropy(output.reshape(-1, 10), y.flatten(), label_smoothing=recipe.label_smoothing) * k
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if batch_id + 1 in joins_average:
            update_average(run.averaged, model, recipe.ema)
        loss_sum += loss.detach() * idx.shape[1]  # = the copies' mean loss x the images each saw
        correct += (output.argmax(-1).view(y.shape) == y).sum()
        seen += idx.numel()
        if batch_id % log_interval == 0 or batch_id == len(batches) - 1:
            batch_loss = loss.item() / k
            if not math.isfinite(batch_loss):
                raise Fail(f"loss became {batch_loss} at epoch {epoch}, step {batch_id}: lower --lr", code=3)
            bar.set_description(f"Loss={batch_loss:.4f} Batch_id={batch_id} "
                                f"Accuracy={100 * correct.item() / seen:.2f}")
    train_loss, train_acc = loss_sum.item() / seen, 100 * correct.item() / seen
    say(f"\nTraining set: Average loss: {train_loss:.4f}, Accuracy: {correct.item()}/{seen} ({train_acc:.2f}%)\n")

    tested = with_fresh_bn(run.averaged, data.train_x[:recipe.bn_images], recipe, device) if averaging else model
    losses, n_correct = evaluate(tested, data.test_x, data.test_y, recipe, device, test_batch_size)
    # with copies: the copies' mean (its loss, its correct count rounded), then each copy's accuracy
    copy_accs = [100 * c / len(data.test_x) for c in n_correct]
    test_loss, test_acc = statistics.mean(losses), statistics.mean(copy_accs)
    tested_on = "Validation" if recipe.validation else "Test"
    say(f"\n{tested_on} set: Average loss: {test_loss:.4f}, Accuracy: {round(statistics.mean(n_correct))}/"
        f"{len(data.test_x)} ({test_acc:.2f}%)\n")
    if k > 1:
        say(f"{tested_on} accuracy of each copy: {' '.join(f'{a:.2f}' for a in copy_accs)}\n")
    say("--------------------------------------------")
    run.scheduler.step()
    record = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
              "test_acc": test_acc, "copy_test_accs": copy_accs, "seconds": time.perf_counter() - t0}
    run.records.append(record)
    run.epoch += 1
    return record


def averaging_steps(n_batches, recipe):
    """The steps (counted from 1) of an averaged epoch after which the weights join the average: every one for
    an EMA, else recipe.snapshots evenly spaced ones (1: the epoch's last)."""
    if recipe.ema:
        return set(range(1, n_batches + 1))
    return {round(n_batches * (s + 1) / recipe.snapshots) for s in range(recipe.snapshots)}


@torch.no_grad()
def update_average(averaged, model, ema):
    """averaged.update_parameters(model), with the EMA's lerp done directly: the same numbers (AveragedModel runs
    the same lerp) without its ~0.3 ms of bookkeeping a call, which the EMA pays after every step."""
    if not ema or averaged.n_averaged == 0:  # snapshots, or the EMA's first step (a copy)
        return averaged.update_parameters(model)
    for a, p in zip(averaged.module.parameters(), model.parameters()):
        a.lerp_(p, 1 - ema)
    averaged.n_averaged += 1


def side_by_side(x, copies):
    """(copies * N, 1, 28, 28), copy by copy -> (N, copies, 28, 28): copy k's images in channel k."""
    return x if copies == 1 else x.unflatten(0, (copies, -1)).flatten(1, 2).transpose(0, 1)


# ---------------------------------------------------------------------------------------------
# testing

def with_fresh_bn(averaged, bn_images, recipe, device):
    """The averaged network, its BatchNorm statistics re-estimated (averaged weights make them stale)."""
    with autocast(device, recipe.precision):  # every copy sees the same images, as in evaluate
        update_bn((x.expand(-1, recipe.copies, -1, -1) for x in bn_images.split(BN_BATCH_SIZE)), averaged)
    return averaged.module


@torch.no_grad()
def evaluate(model, x, y, recipe, device, batch_size=TEST_BATCH_SIZE):
    """Average NLL loss and number correct over (x, y): lists with one entry per copy of the network."""
    model.eval()
    k = recipe.copies
    loss_sum = torch.zeros(k, device=device)
    correct = torch.zeros(k, device=device, dtype=torch.long)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        with autocast(device, recipe.precision):
            output = model(xb.expand(-1, k, -1, -1)).view(len(xb), k, 10)  # all copies see xb
        # in fp32: bf16 sums of a batch's losses are off by ~0.1 % and depend on the batch size
        losses = F.nll_loss(output.float().transpose(1, 2), yb[:, None].expand(-1, k), reduction="none")
        loss_sum += losses.sum(0)
        correct += (output.argmax(-1) == yb[:, None]).sum(0)
    return (loss_sum / len(x)).tolist(), correct.tolist()


def print_summary_table():
    from torchsummary import summary

    summary(Net(), (1, 28, 28), device="cpu")  # a throwaway copy: the trained model's BN stats stay clean


def new_metrics(recipe, seed, device, model, precision_why, dry_run):
    return {"params": count_params(model) // recipe.copies, "copies": recipe.copies, "seed": seed,
            "device": str(device), "torch": str(torch.__version__),  # a plain str: safe loading refuses TorchVersion
            "precision": recipe.precision, "precision_why": precision_why,
            "evaluated_on": f"validation ({recipe.validation} held-out training images)" if recipe.validation
            else "test",
            "recipe": dataclasses.asdict(recipe), "dry_run": dry_run, "threads": torch.get_num_threads(),
            "total_seconds": 0.0, "final_test_acc": None, "best_test_acc": None, "epochs": []}


def finish_metrics(metrics):
    """The run's summary figures; with copies, of the copies' mean, and each copy's in "copy_runs"."""
    accs = [e["test_acc"] for e in metrics["epochs"]]
    metrics["final_test_acc"] = accs[-1]
    metrics["best_test_acc"] = max(accs)
    metrics["epochs_at_target"] = sum(a >= TARGET for a in accs)
    metrics["total_seconds"] = sum(e["seconds"] for e in metrics["epochs"])
    if metrics["copies"] > 1:
        per_copy = zip(*(e["copy_test_accs"] for e in metrics["epochs"]))
        metrics["copy_runs"] = [{"copy": k, "final_test_acc": a[-1], "best_test_acc": max(a),
                                 "epochs_at_target": sum(v >= TARGET for v in a), "test_accs": list(a)}
                                for k, a in enumerate(per_copy)]


def format_copies(metrics):
    finals = [r["final_test_acc"] for r in metrics["copy_runs"]]
    return (f"{len(finals)} copies: final mean {statistics.mean(finals):.3f} +- {statistics.stdev(finals):.3f}, "
            f"min {min(finals):.2f}; {sum(f >= TARGET for f in finals)}/{len(finals)} ended >= {TARGET:.2f} %")


def out_of_memory(e, recipe, test_batch_size):
    """torch's out-of-memory errors (CUDA, MPS, the CPU allocator) as a Fail naming the batch sizes; others go on."""
    if not (isinstance(e, MemoryError) or re.search("out of memory|can't allocate memory|not enough memory", str(e))):
        raise e
    return Fail(f"out of memory with --batch-size {recipe.batch_size} (and --test-batch-size {test_batch_size}): "
                "lower --batch-size, then --test-batch-size if that is not enough")


# ---------------------------------------------------------------------------------------------
# several seeds: one folder each, and seeds.json, a record in the schema of results/ (research/records.py)

def train_seeds(recipe, seeds, data, device, out_dir, argv, overwrite=False, **settings):
    """One train_run per seed (settings: train_run's) into out_dir/seed_N, then seeds.json and seeds.png. Finished
    seeds are skipped and a stopped one resumed from its checkpoint, so the same command continues a batch; several
    processes running it share the seeds between them (batch.py)."""
    batch = Batch(out_dir, recipe, seeds, settings.get("dry_run", False))
    batch.check(overwrite)
    record = seeds_record(recipe, "default" if recipe == Recipe(precision=recipe.precision) else "custom", device,
                          settings.get("precision_why"), [a for a in argv if a != "--overwrite"])
    batch.write_record(record, TARGET)  # the batch's recipe on record from the start, however this process ends
    try:
        for seed, folder in batch.claimed_seeds():
            checkpoint = folder / "checkpoint.pt"
            train_run(recipe, seed, data, device, out_dir=folder, resume=checkpoint if checkpoint.exists() else None,
                      **settings)
    finally:  # also on Ctrl-C: every finished seed of the folder, and the seeds not finished yet
        record = batch.write_record(record, TARGET)
        print(format_seed_summary(record, TARGET))
    return record


# ---------------------------------------------------------------------------------------------
# the command line: the recipe's fields as flags, then the settings of a run that change no number

def parse_args(argv=None):
    """(Recipe, the other options) from the command line; any problem is a Fail."""
    p = ArgumentParser(prog="python train.py", description="Train the 7,830-parameter MNIST CNN.")
    groups = {False: p.add_argument_group("the recipe"),
              True: p.add_argument_group("recipe-study knobs", "what recipe searches vary (research/); "
                                                               "their defaults are the recipe")}
    run = p.add_argument_group("the run (no effect on the numbers but --seed)")
    for f in dataclasses.fields(Recipe):
        flag, help = "--" + f.name.replace("_", "-"), f.metadata["help"]
        help = help if "(default" in help else help + " (default: %(default)s)"
        if f.type is bool:
            groups[f.metadata["study"]].add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                                     help=help)
        else:
            groups[f.metadata["study"]].add_argument(flag, type=f.type, default=f.default, help=help,
                                                     choices=f.metadata["choices"])
    run.add_argument("--test-batch-size", type=int, default=TEST_BATCH_SIZE,
                   help="test batch size: speed only, the same numbers (default: %(default)s)")
    run.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    run.add_argument("--seeds", type=parse_seeds, default=None, metavar="LIST",
                   help="train one run per seed, e.g. 1-10 or 3,7,11, and print a summary")
    run.add_argument("--device", choices=DEVICES, default="auto",
                   help="training device (default: %(default)s: cuda, else mps, else cpu)")
    run.add_argument("--data-dir", default="./data", help="folder holding MNIST/raw; downloaded there if missing "
                                                       "(default: %(default)s)")
    run.add_argument("--out-dir", default="./out", help="metrics, checkpoint and plot go here (default: %(default)s)")
    run.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out-dir (refused without it)")
    run.add_argument("--resume", default=None, metavar="PATH", help="continue from a checkpoint")
    run.add_argument("--log-interval", type=int, default=LOG_INTERVAL,
                   help="steps between progress-bar updates (default: %(default)s)")
    run.add_argument("--dry-run", action="store_true", help="one epoch of one batch, to check the setup quickly")
    opts = p.parse_args(argv)
    recipe = Recipe(**{f.name: getattr(opts, f.name) for f in dataclasses.fields(Recipe)})
    check_value("test_batch_size", opts.test_batch_size, "> 0")
    check_value("log_interval", opts.log_interval, "> 0")
    for flag, seeds in (("--seed", [opts.seed]), ("--seeds", opts.seeds or [])):
        bad = [seed for seed in seeds if not -2**63 <= seed < 2**64]  # what torch.manual_seed accepts
        if bad:
            raise Fail(f"{flag} must be within [-2**63, 2**64 - 1] (got {bad[0]})")
    if opts.seeds and opts.resume:
        raise Fail("--resume continues one run; a --seeds batch is continued by its own command: drop --resume")
    return recipe, opts


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage dump
        raise Fail(f"{message} (see {self.prog} --help)")


def parse_seeds(text):
    """'1-10' -> [1..10], '3,7,11' -> [3, 7, 11]; ranges and lists mix: '1-3,8'."""
    seeds = []
    try:
        for part in text.split(","):
            lo, dash, hi = part.strip().partition("-")
            lo, hi = int(lo), int(hi) if dash else int(lo)
            if len(seeds) + hi - lo >= MAX_SEEDS:  # checked before the list grows: 1-10**20 would never fit
                raise argparse.ArgumentTypeError(f"'{text}' is more than {MAX_SEEDS} seeds: split it into several runs")
            seeds += range(lo, hi + 1)
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of distinct seeds: write e.g. 1-10 or 3,7,11")
    return seeds


def print_resume_hint(argv, checkpoint):
    if "--seeds" in " ".join(argv):  # the same command continues the batch (without --overwrite, which restarts it)
        cmd = shlex.join(["python", "train.py", *[a for a in argv if a != "--overwrite"]])
        print(f"\ninterrupted: continue the batch with the same command: {cmd}", file=sys.stderr)
    elif not checkpoint:
        print("\ninterrupted before the first epoch ended: nothing to resume", file=sys.stderr)
    else:
        kept, skip = [], False
        for a in argv:  # drop an earlier --resume PATH / --resume=PATH: the hint names the latest checkpoint
            if skip or a.startswith("--resume"):
                skip = a == "--resume" and not skip
                continue
            kept.append(a)
        cmd = shlex.join(["python", "train.py", *kept, "--resume", str(checkpoint)])
        print(f"\ninterrupted: the checkpoint of the last completed epoch is {checkpoint}\nresume with: {cmd}",
              file=sys.stderr)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    sys.exit(main())
