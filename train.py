"""Train the 7,830-parameter MNIST network (model.py) to >= 99.4 % test accuracy in 15 epochs.

    python train.py                       # one run, defaults below
    python train.py --seeds 1-10          # one run per seed, then a summary table
    python train.py --resume out/checkpoint.pt

MNIST lives on the training device as two tensors; each epoch draws batches from a shuffled
index permutation and augments the whole batch with one affine warp (random rotation, shift and scale).
"""
import argparse
import ctypes
import ctypes.util
import json
import math
import os
import re
import shlex
import signal
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from tqdm import tqdm

from checkpoint import load_checkpoint, save_checkpoint
from mnist import Fail, augment, hold_out, load_mnist
from model import Net, count_params
from plots import plot_curves, plot_seeds
from rundir import RUN_FILES, locked, prepare_out_dir, refuse_to_overwrite, write_atomic

# defaults: the recipe chosen by sweep.py on held-out training images (README, "How the default recipe was chosen")
EPOCHS = 15
BATCH_SIZE = 64       # with SHIFT and SCALE: the recipe search's best (README); 128 before
TEST_BATCH_SIZE = 500  # on a CPU 1.5-2x as fast as 1000 (its tensors fit the caches); the same outputs
LR = 0.05
MOMENTUM = 0.9
STEP_SIZE = 6
GAMMA = 0.2
DROPOUT = 0.0
ROTATION = 7.0        # degrees, uniform in [-ROTATION, ROTATION] per image
SHIFT = 1.0           # pixels, uniform in [-SHIFT, SHIFT] per image and axis
SCALE = 0.1           # relative size change, uniform in [1 - SCALE, 1 + SCALE] per image
WEIGHT_DECAY = 1e-3   # lifted the weakest seeds most (README, "Before the study tool")
LABEL_SMOOTHING = 0.0
AVERAGE_EPOCHS = None  # test an average of the weights from the first lr decay on (the last 9 epochs of 15)
EMA = 0.999           # the average: an EMA of every step with this decay (0: equal-weight snapshots, below)
SNAPSHOTS = 1         # with EMA 0: snapshots per averaged epoch (1: at its end; more: evenly spaced, SWA style)
BN_IMAGES = 10000     # training images that re-estimate BatchNorm statistics for averaged weights (all: 60000)
BN_BATCH_SIZE = 1000  # in batches of this size (the statistics depend on it: kept as the evidence had it)
LOG_INTERVAL = 20     # steps between progress-bar refreshes (each one syncs with the device)

TARGET = 99.40
INT64_MAX = 2**63 - 1  # torch takes sizes and counts as 64-bit integers
MAX_SEEDS = 1000      # in one --seeds run (each seed is a full run: minutes each)


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
# command line

def parse_args(argv=None):
    p = ArgumentParser(prog="train.py", description="Train the 7,830-parameter MNIST CNN.")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="number of epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="training batch size (default: %(default)s)")
    p.add_argument("--test-batch-size", type=int, default=TEST_BATCH_SIZE, help="test batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=LR, help="SGD learning rate (default: %(default)s)")
    p.add_argument("--momentum", type=float, default=MOMENTUM, help="SGD momentum (default: %(default)s)")
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=False,
                   help="use Nesterov momentum (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY, help="L2 weight decay (default: %(default)s)")
    p.add_argument("--bn-decay", action=argparse.BooleanOptionalAction, default=True,
                   help="apply weight decay to BatchNorm weights and biases too (default: %(default)s)")
    p.add_argument("--step-size", type=int, default=STEP_SIZE, help="StepLR: epochs between decays (default: %(default)s)")
    p.add_argument("--gamma", type=float, default=GAMMA, help="StepLR: decay factor (default: %(default)s)")
    p.add_argument("--dropout", type=float, default=DROPOUT, help="dropout after each conv block (default: %(default)s)")
    p.add_argument("--rotation", type=float, default=ROTATION, help="max rotation in degrees (default: %(default)s)")
    p.add_argument("--shift", type=float, default=SHIFT, help="max shift in pixels (default: %(default)s)")
    p.add_argument("--scale", type=float, default=SCALE, help="max relative scale change, e.g. 0.1 for 0.9-1.1 "
                   "(default: %(default)s)")
    p.add_argument("--average-epochs", type=int, default=AVERAGE_EPOCHS, metavar="K",
                   help="average the weights over the last K epochs and test the average after each of them "
                        "(kept in the checkpoint), BatchNorm statistics recomputed; 0: off (default: the epochs "
                        "after the first learning-rate decay, 9 of 15)")
    p.add_argument("--ema", type=float, default=EMA, metavar="DECAY",
                   help="the average is an exponential moving average of the weights after every step, with this "
                        "decay per step; 0: equal-weight snapshots instead (default: %(default)s)")
    p.add_argument("--snapshots", type=int, default=SNAPSHOTS,
                   help="with --ema 0: weight snapshots per averaged epoch, evenly spaced (default: %(default)s)")
    p.add_argument("--bn-images", type=int, default=BN_IMAGES, metavar="N",
                   help="training images that re-estimate the averaged weights' BatchNorm statistics "
                        "(default: %(default)s)")
    p.add_argument("--label-smoothing", type=float, default=LABEL_SMOOTHING, help="cross-entropy label smoothing (default: %(default)s)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="bf16 autocast or plain fp32; auto: bf16 where the device computes it natively "
                        "(CUDA compute capability >= 8.0, CPUs with AMX or AVX512-BF16), else fp32 "
                        "(IEEE: on a GPU, TF32 off) (default: %(default)s)")
    p.add_argument("--copies", type=int, default=1, metavar="K",
                   help="train K independent copies of the network at once, side by side (grouped convolutions), "
                        "each with its own initialisation, batch order and augmentation, and report each: on a GPU "
                        "about the time of one run (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    p.add_argument("--seeds", type=parse_seeds, default=None, metavar="LIST",
                   help="train one run per seed, e.g. 1-10 or 3,7,11, and print a summary")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="training device (default: %(default)s: cuda, else mps, else cpu)")
    p.add_argument("--data-dir", default="./data", help="folder holding MNIST/raw (default: %(default)s)")
    p.add_argument("--out-dir", default="./out", help="metrics, checkpoint and plot go here (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out-dir (refused without it)")
    p.add_argument("--resume", default=None, metavar="PATH", help="continue from a checkpoint")
    p.add_argument("--log-interval", type=int, default=LOG_INTERVAL, help="steps between progress-bar updates (default: %(default)s)")
    p.add_argument("--validation", type=int, default=0, metavar="N",
                   help="hold out N training images (a fixed draw) and report on them instead of the test set, "
                        "for recipe search without the test set; 0: off (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="one epoch of one batch, to check the setup quickly")
    p.set_defaults(precision_why=None)  # filled in by pick_precision
    args = p.parse_args(argv)
    if args.average_epochs is None:  # averaging the first, high learning rate's weights only blurs them
        args.average_epochs = max(args.epochs - args.step_size, 0)
    check_args(args)
    return args


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


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage dump
        raise Fail(f"{message} (see python {self.prog} --help)")


def check_args(args):
    positive = ["epochs", "batch_size", "test_batch_size", "lr", "step_size", "gamma", "log_interval", "snapshots",
                "copies", "bn_images"]
    for name in positive:
        if not getattr(args, name) > 0:
            raise Fail(f"--{name.replace('_', '-')} must be > 0 (got {getattr(args, name)})")
    for name, hi in [("momentum", 1), ("dropout", 1), ("label_smoothing", 1), ("scale", 1), ("ema", 1)]:
        if not 0 <= getattr(args, name) < hi:
            raise Fail(f"--{name.replace('_', '-')} must be in [0, {hi}) (got {getattr(args, name)})")
    for name in ["weight_decay", "rotation", "shift", "average_epochs", "validation"]:
        if not getattr(args, name) >= 0:
            raise Fail(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if args.seeds and args.resume:
        raise Fail("--resume continues one run: drop --seeds, or resume one seed's checkpoint on its own")
    check_limits(args)


def check_limits(args):
    """inf passes the range checks above, and integers beyond 64 bits overflow inside torch: refuse both."""
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise Fail(f"--{name.replace('_', '-')} must be a finite number (got {value})")
        if type(value) is int and name != "seed" and value > INT64_MAX:
            raise Fail(f"--{name.replace('_', '-')} must be at most {INT64_MAX} (got {value})")
    for flag, seeds in (("--seed", [args.seed]), ("--seeds", args.seeds or [])):
        bad = [seed for seed in seeds if not -2**63 <= seed < 2**64]  # what torch.manual_seed accepts
        if bad:
            raise Fail(f"{flag} must be within [-2**63, 2**64 - 1] (got {bad[0]})")


# NVIDIA's minimum driver for each CUDA major release (CUDA minor version compatibility:
# docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html).
MIN_DRIVER = {11: "450", 12: "525", 13: "580"}


def gpu_not_used_warning(environ, cuda_available, cuda_version, nvidia_devices):
    """The one line to print when NVIDIA GPUs were given to this process (a container's --gpus, Kubernetes or the
    NVIDIA runtime set NVIDIA_VISIBLE_DEVICES; CDI, --device and bare metal show /dev/nvidiaN) but torch cannot use
    them, so that --device auto would train on the CPU with nothing said; else None. cuda_version: torch.version.cuda
    (None for a CPU-only build of torch); nvidia_devices: the /dev/nvidiaN device files there are."""
    visible = environ.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    requested = visible.lower() not in ("", "void", "none")  # void: Docker's --gpus 0, and CDI's setting
    if cuda_available or not (requested or nvidia_devices):
        return None
    what = f"NVIDIA_VISIBLE_DEVICES={visible}" if requested else sorted(map(str, nvidia_devices))[0]
    if cuda_version is None:
        why = "this torch is a CPU-only build: install a CUDA build of torch"
    else:
        major = int(cuda_version.split(".")[0])
        driver = (f"an NVIDIA driver of the R{MIN_DRIVER[major]} series or newer" if major in MIN_DRIVER
                  else f"an NVIDIA driver for CUDA {major}")
        why = (f"this torch is built for CUDA {cuda_version} and needs {driver} on the host (nvidia-smi shows the "
               "driver's version), and in Docker the NVIDIA Container Toolkit with docker run --gpus all")
    return f"warning: an NVIDIA GPU was given ({what}) but torch cannot use it, so this run trains on the CPU: {why}"


def pick_device(name):
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if name == "auto":
        name = "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
        warning = name == "cpu" and gpu_not_used_warning(os.environ, available["cuda"], torch.version.cuda,
                                                          list(Path("/dev").glob("nvidia[0-9]*")))
        if warning:
            print(warning, file=sys.stderr)
    if not available[name]:
        raise Fail(f"--device {name} was requested but is not available here: use --device auto or --device cpu")
    torch.backends.cudnn.benchmark = name == "cuda"  # fixed shapes: let cuDNN pick its fastest kernels
    keep_freed_memory()
    return torch.device(name)


def keep_freed_memory():
    """Let glibc keep the memory a training step frees for the next step instead of returning each freed block
    over its adaptive threshold to the kernel, to be page-faulted in again: on the 2-core Xeon a 1-2 epoch run
    took 180,000-450,000 page faults fewer and about 3 % less time an epoch, in bf16 and fp32, with the same
    numbers (README, Speed). Linux with glibc only; elsewhere (macOS, Windows, musl) nothing changes."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20) and mallopt(M_TRIM_THRESHOLD, 256 << 20))


def pick_precision(requested, device):
    """(precision, why); auto: see native_precision. On CUDA, fp32 means IEEE fp32 as on a CPU, not TF32
    (cuDNN's default for fp32 convolutions), so GPU and CPU fp32 runs train alike."""
    precision, why = native_precision(device) if requested == "auto" else (requested, "--precision " + requested)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
    return precision, why


def native_precision(device):
    """bf16 autocast only where the hardware computes bf16 natively; elsewhere it is emulated and slower
    than fp32 (3.5x a step on an AVX2-only CPU, and on GPUs before compute capability 8.0)."""
    if device.type == "cuda":
        cc = torch.cuda.get_device_capability(device)
        native = cc >= (8, 0)
        return ("bf16" if native else "fp32"), (f"{torch.cuda.get_device_name(device)}, compute capability "
                                                f"{cc[0]}.{cc[1]}: bf16 {'native' if native else 'emulated'}")
    if device.type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        units = [name for name, has in (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
                 if getattr(torch.cpu, has, lambda: False)()]
        # ONEDNN_MAX_CPU_ISA caps oneDNN's kernels below the hardware: below the bf16 ISAs, bf16 is emulated
        cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
        if cap not in ("ALL", "DEFAULT") and not any(k in cap for k in ("BF16", "AMX", "FP16", "AVX10")):
            units = []
            capability += f", ONEDNN_MAX_CPU_ISA={cap}"
        if units:
            return "bf16", f"CPU with {' and '.join(units)} (torch capability {capability}): bf16 native"
        return "fp32", f"CPU without AMX or AVX512-BF16 (torch capability {capability}): bf16 emulated"
    return "fp32", f"{device.type}: bf16 autocast not used"


# ---------------------------------------------------------------------------------------------
# training

def autocast(device, precision):
    enabled = precision == "bf16" and device.type in ("cpu", "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def train_epoch(model, optimizer, data, args, device, epoch, averaged=None):
    """One pass over a fresh permutation of the training set, adding the weights to `averaged` (if given)
    after the steps that averaging_steps names. Returns (average loss, correct, images seen)."""
    train_x, train_y = data
    model.train()
    n, k = len(train_x), args.copies
    # each copy its own order (k = 1: the one permutation, drawn exactly as without copies)
    batches = torch.stack([torch.randperm(n, device=device) for _ in range(k)]).split(args.batch_size, dim=1)
    if args.dry_run:
        batches = batches[:1]
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    snapshot_after = averaging_steps(len(batches), args)
    bar = tqdm(batches, file=sys.stdout)
    for batch_id, idx in enumerate(bar):
        x, y = side_by_side(augment(train_x[idx.flatten()], args.rotation, args.shift, args.scale), k), train_y[idx.T]
        with autocast(device, args.precision):
            output = model(x)
        # output is log-probs; x k: every copy's gradient is that of its own batch's mean loss
        loss = F.cross_entropy(output.reshape(-1, 10), y.flatten(), label_smoothing=args.label_smoothing) * k
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if averaged is not None and batch_id + 1 in snapshot_after:
            update_average(averaged, model, args.ema)
        # keep running sums on the device; read them back only every log_interval steps
        loss_sum += loss.detach() * idx.shape[1]  # = the copies' mean loss x the images each saw
        correct += (output.argmax(-1).view(y.shape) == y).sum()
        seen += idx.numel()
        if batch_id % args.log_interval == 0 or batch_id == len(batches) - 1:
            batch_loss = loss.item() / k
            if not math.isfinite(batch_loss):
                raise Fail(f"loss became {batch_loss} at epoch {epoch}, step {batch_id}: lower --lr", code=3)
            bar.set_description(f"Loss={batch_loss:.4f} Batch_id={batch_id} "
                                f"Accuracy={100 * correct.item() / seen:.2f}")
    return loss_sum.item() / seen, correct.item(), seen


def averaging_steps(n_batches, args):
    """The steps (counted from 1) of an averaged epoch after which the weights join the average: every one for
    an EMA, else args.snapshots evenly spaced ones (1: the epoch's last)."""
    if args.ema:
        return set(range(1, n_batches + 1))
    return {round(n_batches * (s + 1) / args.snapshots) for s in range(args.snapshots)}


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


@torch.no_grad()
def evaluate(model, x, y, args, device):
    """Average NLL loss and number correct over (x, y): lists with one entry per copy of the network."""
    model.eval()
    loss_sum = torch.zeros(args.copies, device=device)
    correct = torch.zeros(args.copies, device=device, dtype=torch.long)
    for xb, yb in zip(x.split(args.test_batch_size), y.split(args.test_batch_size)):
        with autocast(device, args.precision):
            output = model(xb.expand(-1, args.copies, -1, -1)).view(len(xb), args.copies, 10)  # all see xb
        # in fp32: bf16 sums of a batch's losses are off by ~0.1 % and depend on the batch size
        losses = F.nll_loss(output.float().transpose(1, 2), yb[:, None].expand(-1, args.copies), reduction="none")
        loss_sum += losses.sum(0)
        correct += (output.argmax(-1) == yb[:, None]).sum(0)
    return (loss_sum / len(x)).tolist(), correct.tolist()


def print_summary_table():
    from torchsummary import summary

    summary(Net(), (1, 28, 28), device="cpu")  # a throwaway copy: the trained model's BN stats stay clean


def run(args, seed, out_dir, device, data, on_epoch=None, plot=True):
    """One full training run with `seed`; writes metrics.json, checkpoint.pt and (if plot) curves.png to out_dir.
    on_epoch(record), if given, sees each epoch's metrics as it ends (sweep.py reports them to Optuna)."""
    print_summary_table()
    print("---------------------------")
    print("device: ", device)
    print("---------------------------")

    model, optimizer, scheduler, averaged = build(args, seed, device)
    metrics = new_metrics(args, seed, device, model)
    start_epoch = 0
    if args.resume:
        start_epoch = load_checkpoint(args.resume, model, optimizer, scheduler, averaged, metrics, device, args)
        if start_epoch >= args.epochs:
            raise Fail(f"--resume {args.resume}: that run already finished its {args.epochs} epochs, nothing is left "
                       "to continue (its metrics.json has the results): start a new run without --resume")

    paths = {name: out_dir / name for name in RUN_FILES}
    last_checkpoint = args.resume
    try:
        for epoch in range(start_epoch, 1 if args.dry_run else args.epochs):
            record = train_and_test(epoch, model, optimizer, averaged, data, args, device)
            scheduler.step()
            metrics["epochs"].append(record)
            finish_metrics(metrics)
            save_checkpoint(paths["checkpoint.pt"], model, optimizer, scheduler, averaged, epoch, args, metrics)
            write_atomic(paths["metrics.json"], lambda tmp: tmp.write_text(json.dumps(metrics, indent=2)))
            last_checkpoint = paths["checkpoint.pt"]
            if on_epoch:
                on_epoch(record)
        if plot:
            plot_curves(metrics, paths["curves.png"], TARGET)
        if args.copies > 1:
            print(format_copies(metrics))
    except KeyboardInterrupt as e:
        raise Interrupted(last_checkpoint, getattr(e, "code", 130))
    except (Fail, MemoryError, RuntimeError) as e:  # a NaN loss, a full disk, out of memory: name what is left
        e = e if isinstance(e, Fail) else out_of_memory(e, args)
        raise Fail(f"{e}; last good checkpoint: {last_checkpoint}", e.code) if last_checkpoint else e
    return metrics


def format_copies(metrics):
    finals = [r["final_test_acc"] for r in metrics["copy_runs"]]
    return (f"{len(finals)} copies: final mean {statistics.mean(finals):.3f} +- {statistics.stdev(finals):.3f}, "
            f"min {min(finals):.2f}; {sum(f >= TARGET for f in finals)}/{len(finals)} ended >= {TARGET:.2f} %")


def out_of_memory(e, args):
    """torch's out-of-memory errors (CUDA, MPS, the CPU allocator) as a Fail naming the batch sizes; others go on."""
    if not (isinstance(e, MemoryError) or re.search("out of memory|can't allocate memory|not enough memory", str(e))):
        raise e
    return Fail(f"out of memory with --batch-size {args.batch_size} (and --test-batch-size {args.test_batch_size}): "
                "lower --batch-size, then --test-batch-size if that is not enough")


def build(args, seed, device):
    """The seeded network, its SGD optimizer, StepLR schedule and (if asked for) weight average."""
    torch.manual_seed(seed)
    model = Net(dropout=args.dropout, copies=args.copies).to(device)
    params = model.parameters() if args.bn_decay else [  # without: decay only the conv weights
        {"params": [p for p in model.parameters() if p.ndim > 1]},
        {"params": [p for p in model.parameters() if p.ndim == 1], "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                                nesterov=args.nesterov, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=args.gamma)
    ema = get_ema_multi_avg_fn(args.ema) if args.ema else None  # None: equal weights
    averaged = AveragedModel(model, multi_avg_fn=ema) if args.average_epochs else None
    return model, optimizer, scheduler, averaged


def train_and_test(epoch, model, optimizer, averaged, data, args, device):
    """One epoch with its documented log lines; returns the epoch's metrics."""
    t0 = time.perf_counter()
    train_x, train_y, test_x, test_y = data
    lr = optimizer.param_groups[0]["lr"]
    print("--------------------------------------------")
    print(f"EPOCH: {epoch}")
    print(f"Learning Rate = {lr:.6f}")
    averaging = averaged is not None and epoch >= args.epochs - args.average_epochs
    train_loss, train_correct, n_train = train_epoch(model, optimizer, (train_x, train_y), args, device, epoch,
                                                     averaged if averaging else None)
    print(f"\nTraining set: Average loss: {train_loss:.4f}, Accuracy: {train_correct}/{n_train} "
          f"({100 * train_correct / n_train:.2f}%)\n")
    tested = with_fresh_bn(averaged, train_x[:args.bn_images], args, device) if averaging else model
    test_losses, test_correct = evaluate(tested, test_x, test_y, args, device)
    tested_on = "Validation" if args.validation else "Test"
    # with --copies: the copies' mean (its loss, its correct count rounded), then each copy's accuracy
    copy_accs = [100 * c / len(test_x) for c in test_correct]
    test_loss, test_acc = statistics.mean(test_losses), statistics.mean(copy_accs)
    print(f"\n{tested_on} set: Average loss: {test_loss:.4f}, Accuracy: {round(statistics.mean(test_correct))}/"
          f"{len(test_x)} ({test_acc:.2f}%)\n")
    if args.copies > 1:
        print(f"{tested_on} accuracy of each copy: {' '.join(f'{a:.2f}' for a in copy_accs)}\n")
    print("--------------------------------------------")
    return {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": 100 * train_correct / n_train,
            "test_loss": test_loss, "test_acc": test_acc, "copy_test_accs": copy_accs,
            "seconds": time.perf_counter() - t0}


def with_fresh_bn(averaged, bn_images, args, device):
    """The averaged network, its BatchNorm statistics re-estimated (averaged weights make them stale)."""
    with autocast(device, args.precision):  # every copy sees the same images, as in evaluate
        update_bn((x.expand(-1, args.copies, -1, -1) for x in bn_images.split(BN_BATCH_SIZE)), averaged)
    return averaged.module


def new_metrics(args, seed, device, model):
    return {"params": count_params(model) // args.copies, "copies": args.copies, "seed": seed, "device": str(device),
            "torch": str(torch.__version__),  # a plain str: safe loading refuses torch's TorchVersion class
            "precision": args.precision, "precision_why": args.precision_why,
            "evaluated_on": f"validation ({args.validation} held-out training images)" if args.validation else "test",
            "args": {k: v for k, v in vars(args).items() if k not in ("seeds", "resume")},
            "total_seconds": 0.0, "final_test_acc": None, "best_test_acc": None, "epochs": []}


def finish_metrics(metrics):
    """The run's summary figures; with --copies, of the copies' mean, and each copy's in "copy_runs"."""
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


# ---------------------------------------------------------------------------------------------
# several seeds

def run_seeds(args, device, data):
    out_dir = Path(args.out_dir)
    results = []
    try:
        for seed in args.seeds:
            m = run(args, seed, prepare_out_dir(out_dir / f"seed_{seed}"), device, data)
            results.append({**{k: m[k] for k in ("seed", "final_test_acc", "best_test_acc", "epochs_at_target",
                                                 "total_seconds")}, "test_accs": [e["test_acc"] for e in m["epochs"]]})
    finally:  # also on Ctrl-C: report what finished and name what did not
        summary = summarize_seeds(results, args.seeds, device, args.precision, args.precision_why)
        write_atomic(out_dir / "seeds.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
        if results:
            plot_seeds(summary, out_dir / "seeds.png", TARGET)
        print(format_seed_summary(summary))
    return summary


def summarize_seeds(results, seeds, device, precision=None, precision_why=None):
    finals = [r["final_test_acc"] for r in results]
    done = {r["seed"] for r in results}
    return {"device": str(device), "precision": precision, "precision_why": precision_why, "torch": torch.__version__,
            "target": TARGET, "runs": results,
            "not_finished": [s for s in seeds if s not in done],
            "final_mean": statistics.mean(finals) if finals else None,
            "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0 if finals else None,
            "final_min": min(finals) if finals else None,
            "seeds_at_target": sum(f >= TARGET for f in finals)}


def format_seed_summary(s):
    lines = ["", f"{'seed':>6} {'final %':>8} {'best %':>8} {'epochs>=' + str(TARGET):>14} {'seconds':>8}"]
    lines += [f"{r['seed']:>6} {r['final_test_acc']:>8.2f} {r['best_test_acc']:>8.2f} "
              f"{r['epochs_at_target']:>14} {r['total_seconds']:>8.1f}" for r in s["runs"]]
    if s["runs"]:
        lines.append(f"final: mean {s['final_mean']:.3f} +- {s['final_std']:.3f}, min {s['final_min']:.2f}; "
                     f"{s['seeds_at_target']}/{len(s['runs'])} seeds ended >= {TARGET:.2f} %")
    if s["not_finished"]:
        lines.append(f"not finished: seeds {', '.join(map(str, s['not_finished']))}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return exit_status(lambda: train(argv), lambda e: print_resume_hint(argv, getattr(e, "checkpoint", None)))


def train(argv):
    args = parse_args(argv)
    device = pick_device(args.device)
    args.precision, args.precision_why = pick_precision(args.precision, device)
    print(f"precision: {args.precision} ({args.precision_why})")
    out_dir = prepare_out_dir(args.out_dir)
    with locked(out_dir):
        refuse_to_overwrite(args, out_dir)
        data = load_mnist(args.data_dir, device)
        if args.validation:
            data = hold_out(data, args.validation)
        if args.seeds:
            run_seeds(args, device, data)
        else:
            run(args, args.seed, out_dir, device, data)


def exit_status(job, on_interrupt):
    """A script's exit status (train.py, sweep.py, benchmark.py): 0 when job() ends; for a Fail, its one-line
    message and code; for Ctrl-C or SIGTERM, its code (130 or 143) after on_interrupt(exception) says what is kept."""
    try:
        job()
    except Fail as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt as e:
        on_interrupt(e)
        return getattr(e, "code", 130)
    return 0


def print_resume_hint(argv, checkpoint):
    if "--seeds" in " ".join(argv):
        print("\ninterrupted: the summary above names the seeds that did not finish", file=sys.stderr)
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
