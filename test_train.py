"""train.py's pieces and whole runs, on a tiny synthetic MNIST written in torchvision's layout."""
import ast
import contextlib
import dataclasses
import errno
import json
import math
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mnist import MNIST_MEAN, MNIST_STD, augment, hold_out, load_mnist, warp
import device
import rundir
import train
from batch import format_seed_summary
from research.records import validate
from model import Net

ROOT = Path(__file__).resolve().parent  # the project
SHARED_DATA = ROOT.parent / "shared" / "data"
FAST = ["--epochs", "2", "--batch-size", "32", "--test-batch-size", "50", "--device", "cpu"]


def write_idx(path, array, magic):
    path.write_bytes(struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in array.shape)
                     + array.numpy().tobytes())


def write_mnist(root, n_train=96, n_test=40):
    """A learnable toy MNIST: each label draws a bright bar at its own place."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.arange(n, dtype=torch.uint8) % 10
        images = (torch.rand(n, 28, 28, generator=g) * 40).to(torch.uint8)
        for i, label in enumerate(labels.tolist()):
            images[i, 4 + 2 * label: 6 + 2 * label, 6:22] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 2049)
    return raw


@pytest.fixture
def mnist(tmp_path):
    write_mnist(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Never reach the network from a test: with no mirrors, torchvision's download fails at once."""
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [])


def run_main(capsys, *argv):
    code = train.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words, expected_code=2):
    assert code == expected_code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


@contextlib.contextmanager
def one_thread():
    """This process at one thread, as OMP_NUM_THREADS=1 sets a new one: seeds train with the same numbers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def comparable(metrics):
    """The metrics that must repeat exactly: everything but wall-clock times."""
    return [{k: v for k, v in e.items() if k != "seconds"} for e in metrics["epochs"]]


# ---------------------------------------------------------------------------------------------
# augmentation

def l_shape():
    x = torch.full((1, 1, 28, 28), -MNIST_MEAN / MNIST_STD)
    x[..., 4:20, 8:11] = 2.0
    x[..., 17:20, 8:20] = 2.0
    return x


def test_augment_keeps_shape_dtype_device_and_is_identity_without_rotation_or_shift():
    x = torch.randn(8, 1, 28, 28)
    y = augment(x, rotation=15, shift=2)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.equal(augment(x, rotation=0, shift=0), x)
    # the warp itself is the identity at 0 degrees and no shift
    zero = torch.zeros(8)
    assert torch.allclose(warp(x, zero, torch.zeros(8, 2)), x, atol=1e-5)


def test_warp_rotates_and_shifts_like_the_exact_pixel_operations():
    x = l_shape()
    quarter = warp(x, torch.tensor([math.pi / 2]), torch.zeros(1, 2))
    assert torch.allclose(quarter, torch.rot90(x, k=1, dims=(2, 3)), atol=1e-4)
    shifted = warp(x, torch.zeros(1), torch.tensor([[3.0, -2.0]]))  # 3 px right, 2 px up
    assert torch.allclose(shifted[..., :-3, 3:], x[..., 2:-1, :-3], atol=1e-4)


def test_augment_moves_a_non_symmetric_pattern_with_its_own_angle_per_image():
    torch.manual_seed(0)
    x = l_shape().repeat(16, 1, 1, 1)
    y = augment(x, rotation=20, shift=0)
    moved = (y - x).abs().flatten(1).max(1).values
    assert (moved > 0.01).all() and (moved > 1).sum() >= 8  # every image changed, most by a lot
    assert len({round(float(v), 3) for v in (y - x).abs().flatten(1).sum(1)}) == 16  # each its own angle
    corners = y[..., 0, 0]  # rotated-in corners are background, not zeros
    assert torch.allclose(corners, torch.full_like(corners, -MNIST_MEAN / MNIST_STD), atol=1e-5)


def test_weight_average_is_the_mean_of_the_snapshots_with_fresh_batchnorm_statistics():
    recipe = train.Recipe(precision="fp32", ema=0.0)
    run = train.new_run(recipe, seed=0, device=torch.device("cpu"))
    model, averaged = run.model, run.averaged
    images = torch.randn(64, 1, 28, 28)
    snapshots = []
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append([p.clone() for p in model.parameters()])
        averaged.update_parameters(model)
        tested = train.with_fresh_bn(averaged, images, recipe, torch.device("cpu"))
    for p, *snaps in zip(tested.parameters(), *snapshots):
        assert torch.allclose(p, torch.stack(snaps).mean(0), atol=1e-6)
    first_conv, _, first_bn = tested.features[0][:3]
    with torch.no_grad():
        expected = first_conv(images).relu().mean((0, 2, 3))
    assert torch.allclose(first_bn.running_mean, expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# data

def test_loader_reads_torchvision_layout_into_normalised_tensors(mnist):
    train_x, train_y, test_x, test_y = load_mnist(mnist, torch.device("cpu"))
    assert train_x.shape == (96, 1, 28, 28) and test_x.shape == (40, 1, 28, 28)
    assert train_x.dtype == torch.float32
    assert train_y.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert math.isclose(train_x.max().item(), (1 - MNIST_MEAN) / MNIST_STD, rel_tol=1e-5)
    assert math.isclose(train_x.min().item(), -MNIST_MEAN / MNIST_STD, rel_tol=1e-5)


def test_missing_data_without_network_is_one_clear_line(tmp_path, capsys):
    code, _, err = run_main(capsys, "--data-dir", tmp_path / "nothing", "--out-dir", tmp_path / "out", *FAST)
    assert_one_line_error(code, err, "--data-dir", "MNIST/raw", "train-images-idx3-ubyte")


@pytest.mark.parametrize("damage, words", [
    ("truncate", ["damaged"]),
    ("magic", ["damaged"]),
    ("count", ["disagree", "96 images", "95 labels"]),
])
def test_damaged_data_files_are_one_clear_line(mnist, tmp_path, capsys, damage, words):
    raw = mnist / "MNIST" / "raw"
    if damage == "truncate":
        f = raw / "train-images-idx3-ubyte"
        f.write_bytes(f.read_bytes()[:5000])
    elif damage == "magic":
        f = raw / "t10k-images-idx3-ubyte"
        f.write_bytes(struct.pack(">i", 1234) + f.read_bytes()[4:])
    else:
        write_idx(raw / "train-labels-idx1-ubyte", torch.zeros(95, dtype=torch.uint8), 2049)
    code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "out", *FAST)
    assert_one_line_error(code, err, *words)


def test_data_dir_or_out_dir_that_is_a_file(mnist, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, _, err = run_main(capsys, "--data-dir", a_file, "--out-dir", tmp_path / "out", *FAST)
    assert_one_line_error(code, err, "--data-dir", "is a file")
    code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", a_file, *FAST)
    assert_one_line_error(code, err, "--out-dir", "is a file")
    code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", a_file / "sub", *FAST)
    assert_one_line_error(code, err, "--out-dir", "cannot be created")


@pytest.mark.parametrize("flag, value", [
    ("--epochs", 0), ("--batch-size", 0), ("--test-batch-size", -1), ("--lr", 0), ("--lr", -0.1),
    ("--momentum", 1), ("--momentum", -0.5), ("--gamma", 0), ("--step-size", 0), ("--dropout", 1),
    ("--dropout", -0.1), ("--rotation", -5), ("--label-smoothing", 1), ("--lr", "nan"),
    ("--rotation", "inf"), ("--shift", "inf"), ("--lr", "inf"), ("--weight-decay", "inf"),  # inf passes >= 0
    ("--seed", 2**64), ("--seed", -2**63 - 1), ("--seeds", f"1,{10**23}"),  # beyond torch.manual_seed
    ("--batch-size", 2**63), ("--epochs", 10**23),  # torch overflows on sizes beyond 64 bits
    ("--copies", 0), ("--bn-images", 0), ("--ema", 1), ("--ema", -0.5),
])
def test_out_of_range_flags_are_one_clear_line(tmp_path, capsys, flag, value):
    code, _, err = run_main(capsys, "--out-dir", tmp_path / "out", flag, value)
    assert_one_line_error(code, err, flag)
    assert not (tmp_path / "out").exists()


def real_cpu_out_of_memory():
    torch.empty(2**50, dtype=torch.uint8)  # 1 PiB: more than any address space holds


def cuda_out_of_memory():
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize("allocate", [real_cpu_out_of_memory, cuda_out_of_memory])
def test_out_of_memory_is_one_line_naming_the_batch_size(mnist, tmp_path, capsys, monkeypatch, allocate):
    monkeypatch.setattr(train, "augment", lambda *a: allocate())
    code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "out", *FAST)
    assert_one_line_error(code, err, "out of memory", "lower --batch-size")


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_requested_device_that_is_missing(tmp_path, capsys, device):
    if train.pick_device("auto").type == device:
        pytest.skip(f"{device} is available here")
    code, _, err = run_main(capsys, "--device", device, "--out-dir", tmp_path / "out")
    assert_one_line_error(code, err, f"--device {device}", "--device cpu")


# ---------------------------------------------------------------------------------------------
# whole runs

def test_two_epoch_run_writes_outputs_and_prints_the_documented_log(mnist, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"] == 7830 and metrics["seed"] == 1 and metrics["device"] == "cpu"
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    assert set(metrics["epochs"][0]) >= {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"}
    assert metrics["final_test_acc"] == metrics["epochs"][-1]["test_acc"]
    assert metrics["best_test_acc"] == max(e["test_acc"] for e in metrics["epochs"])
    assert metrics["total_seconds"] > 0 and metrics["torch"] == torch.__version__
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "recipe", "seed"} <= set(ckpt) and ckpt["epoch"] == 1
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.tmp"))

    lines = stdout.splitlines()
    expected_in_order = [
        "Total params: 7,830", "---------------------------", "device:  cpu", "---------------------------",
        "--------------------------------------------", "EPOCH: 0", f"Learning Rate = {train.Recipe.lr:.6f}",
        "Training set: Average loss: ", "Test set: Average loss: ", "--------------------------------------------",
        "EPOCH: 1"]
    at = 0
    for want in expected_in_order:
        at = next(i for i in range(at, len(lines)) if lines[i].startswith(want)) + 1
    e0 = metrics["epochs"][0]
    n_correct = round(e0["train_acc"] * 96 / 100)
    assert f"Training set: Average loss: {e0['train_loss']:.4f}, Accuracy: {n_correct}/96 ({e0['train_acc']:.2f}%)" in lines
    assert f"Test set: Average loss: {e0['test_loss']:.4f}, Accuracy: {round(e0['test_acc'] * 40 / 100)}/40 " \
           f"({e0['test_acc']:.2f}%)" in lines
    assert "Loss=" in stdout and "Batch_id=2 Accuracy=" in stdout  # 96 / 32 = 3 batches: ids 0..2


def test_same_seed_same_numbers_on_cpu(mnist, tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        assert run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / name, *FAST)[0] == 0
        runs.append(comparable(json.loads((tmp_path / name / "metrics.json").read_text())))
    assert runs[0] == runs[1]
    assert run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "c", *FAST, "--seed", "2")[0] == 0
    assert comparable(json.loads((tmp_path / "c" / "metrics.json").read_text())) != runs[0]


def test_keep_freed_memory_takes_on_glibc_and_is_harmless_elsewhere(monkeypatch):
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert device.keep_freed_memory()
    monkeypatch.setattr(device.ctypes, "CDLL", lambda name: object())  # a C library without mallopt (macOS)
    assert device.keep_freed_memory() is False
    monkeypatch.setattr(device.ctypes.util, "find_library", lambda name: None)  # no C library found (Windows)
    monkeypatch.setattr(device.ctypes, "CDLL", lambda name: (_ for _ in ()).throw(TypeError("name")))
    assert device.keep_freed_memory() is False


def test_test_batch_size_changes_no_number(mnist, tmp_path, capsys):
    """--test-batch-size is a speed setting only (the default changed from 1000 to 500 for speed): every epoch's
    test accuracy is the same, and so are the averaged weights' BatchNorm statistics (re-estimated in batches of
    their own size, which sets them)."""
    runs = []
    for size in (40, 7):  # the whole toy test set in one batch, or six and a remainder
        out = tmp_path / f"tbs{size}"
        args = ["--data-dir", mnist, "--out-dir", out, *FAST, "--average-epochs", "1", "--test-batch-size", size]
        assert run_main(capsys, *args)[0] == 0
        runs.append(json.loads((out / "metrics.json").read_text())["epochs"])
    assert [e["test_acc"] for e in runs[0]] == [e["test_acc"] for e in runs[1]]
    assert [e["test_loss"] for e in runs[0]] == pytest.approx([e["test_loss"] for e in runs[1]], rel=1e-5)
    assert [e["train_loss"] for e in runs[0]] == [e["train_loss"] for e in runs[1]]


@pytest.mark.parametrize("extra", [["--average-epochs", "0"], ["--average-epochs", "2"]])
def test_interrupted_run_resumed_with_the_printed_command_ends_like_an_uninterrupted_one(
        mnist, tmp_path, capsys, monkeypatch, extra):
    """Stopped in the last of 3 epochs: with --average-epochs 2 the checkpoint holds an average in progress (epoch 1's
    steps), which the resumed run must carry on, not restart."""
    args = ["--data-dir", mnist, "--out-dir", tmp_path / "whole", *FAST, "--epochs", "3", "--step-size", "1", *extra]
    assert run_main(capsys, *args)[0] == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    monkeypatch.setattr(train, "evaluate", interrupt_at_call(3, train.evaluate))  # the test of epoch 2
    args[3] = tmp_path / "cut"
    code, _, err = run_main(capsys, *args)
    assert code == 130
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["epochs"][-1]["epoch"] == 1
    monkeypatch.undo()
    assert not list((tmp_path / "cut").glob("*.tmp")) and not (tmp_path / "cut" / "model.pt").exists()
    command = err.strip().splitlines()[-1].removeprefix("resume with: ")
    assert f"--resume {tmp_path / 'cut' / 'checkpoint.pt'}" in command
    assert run_main(capsys, *shlex.split(command)[2:])[0] == 0
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert comparable(resumed) == comparable(whole)
    assert (tmp_path / "cut" / "model.pt").read_bytes() == (tmp_path / "whole" / "model.pt").read_bytes()


def interrupt_at_call(n, function):
    """`function`, raising KeyboardInterrupt (what Ctrl-C raises) at its n-th call instead."""
    calls = []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return function(*a, **kw)

    return interrupted


def test_real_stop_signals_keep_the_last_checkpoint_and_print_the_resume_command(mnist, tmp_path, capsys):
    """Ctrl-C (exit 130) and SIGTERM (docker stop; exit 143) to real train.py processes, both running at once."""
    stops = {"ctrl-c": (signal.SIGINT, 130), "sigterm": (signal.SIGTERM, 143)}
    outs = {name: tmp_path / name for name in stops}
    procs = {name: subprocess.Popen([sys.executable, "train.py", "--data-dir", str(mnist), "--out-dir", str(out),
                                     *FAST, "--epochs", "10000"], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for name, out in outs.items()}
    for name, (stop, code) in stops.items():
        out, proc = outs[name], procs[name]
        deadline = time.time() + 60
        while not (out / "metrics.json").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        second, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--overwrite")
        assert_one_line_error(second, err, f"--out-dir {out} is in use by another train.py run")  # never interleaved
        proc.send_signal(stop)
        err = proc.communicate(timeout=60)[1]
        assert proc.returncode == code, err
        assert "Traceback" not in err and "resume with: python train.py" in err
        saved_epoch = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]  # loads: not half-written
        logged = len(json.loads((out / "metrics.json").read_text())["epochs"])
        assert logged - 1 <= saved_epoch <= logged  # the checkpoint is written just before metrics.json
        assert not list(out.glob("*.tmp"))


def test_resume_from_a_bad_checkpoint_is_one_clear_line(mnist, tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    other = tmp_path / "other.pt"
    torch.save({"model": torch.nn.Linear(3, 3).state_dict()}, other)
    for path in (garbage, other, tmp_path / "missing.pt"):
        code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "out", *FAST, "--resume", path)
        assert_one_line_error(code, err, "--resume")


class CodeOnLoad:
    """Unpickling this calls `call(*args)`: a stand-in for any command a crafted file could run."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def test_resume_with_another_recipe_is_refused_naming_the_checkpoints_flags(mnist, tmp_path, capsys):
    first = ["--data-dir", mnist, "--out-dir", tmp_path / "first", *FAST, "--epochs", "1"]
    assert run_main(capsys, *first)[0] == 0
    checkpoint = tmp_path / "first" / "checkpoint.pt"
    resume = ["--data-dir", mnist, *FAST, "--epochs", "1", "--resume", checkpoint]
    code, _, err = run_main(capsys, *resume, "--out-dir", tmp_path / "a", "--lr", "0.02", "--nesterov")
    assert_one_line_error(code, err, f"--resume {checkpoint} was trained with --lr 0.05 --no-nesterov",
                          "this run has --lr 0.02 --nesterov")
    # a checkpoint that predates a knob cannot say how it trained: refused, not guessed
    state = torch.load(checkpoint, weights_only=True)
    del state["recipe"]["ema"]
    torch.save(state, tmp_path / "old.pt")
    code, _, err = run_main(capsys, *resume[:-1], tmp_path / "old.pt", "--out-dir", tmp_path / "b")
    assert_one_line_error(code, err, "did not record --ema", "start a new run")
    # the same recipe passes this check (other flags may differ); this run has finished, which is one line too
    code, _, err = run_main(capsys, *resume, "--out-dir", tmp_path / "c", "--log-interval", "3")
    assert_one_line_error(code, err, "already finished its 1 epochs, nothing is left to continue")


def test_a_checkpoint_in_the_earlier_layout_resumes_exactly(mnist, tmp_path, capsys):
    """Checkpoints written before the recipe had a record of its own keep every flag under "args" and the seed in
    the metrics: they continue exactly like today's."""
    args = ["--data-dir", mnist, *FAST, "--epochs", "2"]
    assert run_main(capsys, *args, "--out-dir", tmp_path / "whole")[0] == 0
    cut = tmp_path / "cut"
    assert run_main(capsys, *args, "--out-dir", cut, "--epochs", "1")[0] == 0
    state = torch.load(cut / "checkpoint.pt", weights_only=True)
    state["args"] = {**state.pop("recipe"), "epochs": 2, "seed": state.pop("seed"), "device": "cpu", "dry_run": False}
    torch.save(state, cut / "checkpoint.pt")
    assert run_main(capsys, *args, "--out-dir", cut, "--resume", cut / "checkpoint.pt")[0] == 0
    whole, resumed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "cut"))
    assert comparable(resumed) == comparable(whole)


def test_resume_never_runs_code_from_the_checkpoint(mnist, tmp_path, capsys):
    out, marker = tmp_path / "out", tmp_path / "marker"
    assert run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--epochs", "1")[0] == 0
    crafted = torch.load(out / "checkpoint.pt", weights_only=True)
    for payload in (CodeOnLoad(open, str(marker), "w"), CodeOnLoad(os.mkdir, str(marker))):  # io.open; posix.mkdir
        crafted["metrics"]["payload"] = payload  # a real checkpoint with one unsafe object inside
        torch.save(crafted, tmp_path / "crafted.pt")
        code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "resumed", *FAST,
                                "--resume", tmp_path / "crafted.pt")
        assert_one_line_error(code, err, "--resume", "asks to load", "refused", "nothing in it was run")
        assert not marker.exists()
    torch.load(tmp_path / "crafted.pt", weights_only=False)  # the old way of loading: the payload runs
    assert marker.exists()


def test_output_piped_into_a_reader_that_stops_ends_quietly():
    """`python evaluate.py ... | head`: when the reader goes, a script stops with 141 (SIGPIPE's) and says nothing,
    not even at exit, when Python flushes what is left of its output."""
    flood = "import sys, errors; sys.exit(errors.exit_status(lambda: [print('7' * 99) for _ in range(10**6)], None))"
    p = subprocess.Popen([sys.executable, "-c", flood], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.read(10) == b"7" * 10
    p.stdout.close()
    assert p.wait(timeout=60) == 141 and p.stderr.read() == b""


def test_exploding_loss_stops_at_once_naming_epoch_step_and_checkpoint(mnist, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--lr", "1e30", "--log-interval", "1")
    assert_one_line_error(code, err, "loss became", "epoch 0, step 1", "--lr", expected_code=3)

    # a good epoch first (3 steps), then a NaN: the error points at that epoch's checkpoint, which stays intact
    steps = []

    def nan_from_step_4(x, *a):
        steps.append(1)
        return augment(x, *a) * (float("nan") if len(steps) > 3 else 1)

    monkeypatch.setattr(train, "augment", nan_from_step_4)
    code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--log-interval", "1")
    assert_one_line_error(code, err, "loss became nan at epoch 1, step 0",
                          f"last good checkpoint: {out / 'checkpoint.pt'}", expected_code=3)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 0
    assert [e["epoch"] for e in json.loads((out / "metrics.json").read_text())["epochs"]] == [0]


@pytest.mark.parametrize("full_at", ["checkpoint.pt", "metrics.json"])
def test_full_disk_is_one_line_and_leaves_the_earlier_files_intact(mnist, tmp_path, capsys, monkeypatch, full_at):
    replace = os.replace

    def disk_full_from_epoch_1(src, dst):  # the first epoch's files fit, the second's do not
        if Path(dst).name == full_at and Path(dst).exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full_from_epoch_1)
    out = tmp_path / "out"
    code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST)
    assert_one_line_error(code, err, f"could not write {out / full_at} (No space left on device)",
                          f"last good checkpoint: {out / 'checkpoint.pt'}")
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == (0 if full_at == "checkpoint.pt" else 1)
    assert [e["epoch"] for e in json.loads((out / "metrics.json").read_text())["epochs"]] == [0]
    assert not list(out.glob("*.tmp"))


# ---------------------------------------------------------------------------------------------
# the out-dir: one run at a time, and an earlier run is never replaced by accident

def test_a_new_run_never_replaces_an_earlier_one_unless_told_to(mnist, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()  # an empty existing folder is fine
    one_epoch = ["--data-dir", mnist, "--out-dir", out, *FAST, "--epochs", "1"]
    assert run_main(capsys, *one_epoch)[0] == 0
    earlier = {name: (out / name).read_bytes() for name in rundir.RUN_FILES}
    final = json.loads(earlier["metrics.json"])["final_test_acc"]
    code, _, err = run_main(capsys, *one_epoch, "--dry-run")
    assert_one_line_error(code, err, f"{out} already holds a run (seed 1, 1 epoch done, "
                          f"final test accuracy {final:.2f} %)", f"--resume {out / 'checkpoint.pt'}",
                          "another --out-dir", "--overwrite")
    assert {name: (out / name).read_bytes() for name in rundir.RUN_FILES} == earlier
    assert run_main(capsys, *one_epoch, "--seed", "2", "--overwrite")[0] == 0
    assert json.loads((out / "metrics.json").read_text())["seed"] == 2


def test_a_run_into_a_locked_out_dir_is_refused_and_a_crashed_holder_blocks_nothing(mnist, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    hold = "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print(1, flush=True); input()"
    holder = subprocess.Popen([sys.executable, "-c", hold, out / rundir.LOCK_FILE],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "1\n"  # another run holds the lock
    code, _, err = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--epochs", "1")
    assert_one_line_error(code, err, f"--out-dir {out} is in use by another train.py run", "another --out-dir")
    holder.kill()  # a crash: the lock file stays, the lock goes with the process
    holder.wait()
    assert run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--epochs", "1")[0] == 0


# ---------------------------------------------------------------------------------------------
# several seeds

@pytest.mark.parametrize("text, seeds", [("1-10", list(range(1, 11))), ("3,7,11", [3, 7, 11]),
                                         ("1-3,8", [1, 2, 3, 8]), ("5", [5])])
def test_seed_lists(text, seeds):
    assert train.parse_seeds(text) == seeds


@pytest.mark.parametrize("text, words", [(text, ["distinct seeds", "1-10"]) for text in ("a", "1-", "3-1", "1,1", "")]
                         + [(text, ["more than 1000 seeds"]) for text in ("1-1001", "1-500,600-1200", f"1-{10**20}")])
def test_bad_seed_lists_are_one_clear_line(text, words, capsys):
    code, _, err = run_main(capsys, "--seeds", text)
    assert_one_line_error(code, err, "--seeds", *words)


def test_multi_seed_run_writes_one_folder_per_seed_and_a_summary(mnist, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--epochs", "1", "--seeds", "1,2")
    assert code == 0
    summary = json.loads((out / "seeds.json").read_text())
    per_seed = [json.loads((out / f"seed_{s}" / "metrics.json").read_text()) for s in (1, 2)]
    assert [r["seed"] for r in summary["runs"]] == [1, 2] and summary["seeds_not_run"] == []
    assert [r["test_acc"] for r in summary["runs"]] == [[e["test_acc"] for e in m["epochs"]] for m in per_seed]
    assert (summary["precision"], summary["precision_why"]) == train.pick_precision("auto", torch.device("cpu"))
    assert summary["recipe"] == {**per_seed[0]["recipe"]} and summary["recipe"]["epochs"] == 1
    assert summary["recipe_name"] == "custom" and summary["command"].startswith("python train.py ")
    validate(summary, "seeds.json")  # a record in the schema of results/: committed as it is
    assert "seed" in stdout and "final: mean" in stdout and stdout.count("EPOCH: 0") == 2
    assert (out / "seeds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the seeds' curves, drawn


def test_dry_run_is_one_batch_of_one_epoch_for_one_run_and_for_each_seed(mnist, tmp_path, capsys):
    for extra in ([], ["--seeds", "1,2"]):
        out = tmp_path / f"out{len(extra)}"
        code, stdout, _ = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--dry-run", *extra)
        assert code == 0 and stdout.count("EPOCH: ") == (2 if extra else 1) and "EPOCH: 1" not in stdout
        assert "Batch_id=0 " in stdout and "Batch_id=1 " not in stdout  # 96 images in batches of 32: the first only
    assert [len(r["test_acc"]) for r in json.loads((out / "seeds.json").read_text())["runs"]] == [1, 1]


@pytest.fixture
def sigterm_stops():
    """What `python train.py` sets up before main(), for main() called in this process."""
    previous = signal.signal(signal.SIGTERM, train.stop_on_sigterm)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("stop, code", [("ctrl-c", 130), ("sigterm", 143)])
def test_interrupted_multi_seed_run_reports_what_finished_and_names_the_rest(
        mnist, tmp_path, capsys, monkeypatch, sigterm_stops, stop, code):
    real_run = train.train_run

    def interrupted_at_seed_2(recipe, seed, *rest, **kw):
        if seed == 2 and stop == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal: its handler raises here
        if seed == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises
        return real_run(recipe, seed, *rest, **kw)

    monkeypatch.setattr(train, "train_run", interrupted_at_seed_2)
    out = tmp_path / "out"
    got, stdout, err = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--epochs", "1", "--seeds", "1-3")
    assert got == code
    summary = json.loads((out / "seeds.json").read_text())
    assert [r["seed"] for r in summary["runs"]] == [1] and summary["seeds_not_run"] == [2, 3]
    assert "not finished: seeds 2, 3" in stdout
    assert "continue the batch with the same command: python train.py " in err


def test_the_same_command_continues_a_stopped_batch_exactly(mnist, tmp_path, capsys, monkeypatch):
    """Stopped in seed 2's last epoch, with its weight average in progress: the same command skips seed 1, resumes
    seed 2 from its checkpoint, trains seed 3, and every seed ends with the numbers of an uninterrupted batch."""
    batch = ["--data-dir", mnist, *FAST, "--epochs", "3", "--step-size", "1", "--seeds", "1-3"]
    assert run_main(capsys, *batch, "--out-dir", tmp_path / "whole")[0] == 0
    stopped = [*batch, "--out-dir", tmp_path / "cut"]
    monkeypatch.setattr(train, "evaluate", interrupt_at_call(6, train.evaluate))  # seed 2's third test
    code, _, err = run_main(capsys, *stopped)
    monkeypatch.undo()
    assert code == 130 and json.loads((tmp_path / "cut" / "seeds.json").read_text())["seeds_not_run"] == [2, 3]
    assert err.strip().endswith(shlex.join(["python", "train.py", *map(str, stopped)]))  # "the same command"
    code, stdout, _ = run_main(capsys, *stopped)
    assert code == 0 and stdout.count("EPOCH: 0") == 1 and stdout.count("EPOCH: 2") == 2  # seed 3 whole, seed 2's last
    for seed in (1, 2, 3):
        whole, cut = (json.loads((tmp_path / d / f"seed_{seed}" / "metrics.json").read_text()) for d in ("whole", "cut"))
        assert comparable(cut) == comparable(whole), seed
    record = json.loads((tmp_path / "cut" / "seeds.json").read_text())
    assert [r["seed"] for r in record["runs"]] == [1, 2, 3] and record["seeds_not_run"] == []
    code, stdout, _ = run_main(capsys, *stopped)  # a finished batch: its summary, nothing trained
    assert code == 0 and "EPOCH" not in stdout and "final: mean" in stdout and "not finished" not in stdout


def test_a_batch_of_another_recipe_is_refused_and_overwrite_starts_it_afresh(mnist, tmp_path, capsys):
    out = tmp_path / "out"
    batch = ["--data-dir", mnist, "--out-dir", out, *FAST, "--epochs", "1", "--seeds", "1,2"]
    assert run_main(capsys, *batch)[0] == 0
    earlier = (out / "seeds.json").read_bytes()
    code, _, err = run_main(capsys, *batch, "--lr", "0.02")
    assert_one_line_error(code, err, f"{out} holds a --seeds batch trained with --lr 0.05, this command has --lr 0.02",
                          "another --out-dir", "--overwrite")
    code, _, err = run_main(capsys, *batch, "--dry-run")
    assert_one_line_error(code, err, "holds a batch of whole runs", "--overwrite")
    assert (out / "seeds.json").read_bytes() == earlier
    code, stdout, _ = run_main(capsys, *batch, "--lr", "0.02", "--overwrite")
    assert code == 0 and stdout.count("EPOCH: 0") == 2
    assert json.loads((out / "seeds.json").read_text())["recipe"]["lr"] == 0.02
    code, stdout, _ = run_main(capsys, *batch, "--lr", "0.02", "--seeds", "1-3")  # a longer list extends the batch
    assert code == 0 and stdout.count("EPOCH: 0") == 1
    assert [r["seed"] for r in json.loads((out / "seeds.json").read_text())["runs"]] == [1, 2, 3]


def test_processes_share_a_batch_and_a_killed_ones_seed_is_taken_up(mnist, tmp_path, capsys):
    """Real processes, one thread each: two started at once train each seed once; one killed with SIGKILL (no handler
    runs, the OS drops its lock) leaves a stopped seed that the same command resumes. Every seed ends with the
    numbers of an uninterrupted batch in one process at the same thread count."""
    batch = ["--data-dir", mnist, *FAST, "--epochs", "3", "--step-size", "1", "--log-interval", "100"]
    with one_thread():
        assert run_main(capsys, *batch, "--seeds", "1-4", "--out-dir", tmp_path / "one")[0] == 0
    start = lambda seeds, out: subprocess.Popen(
        [sys.executable, "train.py", *map(str, batch), "--seeds", seeds, "--out-dir", str(out)], cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shared = [start("1-4", tmp_path / "shared") for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in shared]
    assert [p.returncode for p in shared] == [0, 0]
    assert sum(out.count("EPOCH: 0") for out in outputs) == 4 and all(out.count("EPOCH: 0") for out in outputs)

    killed = start("1-2", tmp_path / "killed")
    deadline = time.time() + 60
    while not (tmp_path / "killed" / "seed_1" / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    killed.kill()
    assert killed.wait() == -signal.SIGKILL
    assert json.loads((tmp_path / "killed" / "seeds.json").read_text())["recipe"]["epochs"] == 3  # on record already
    with one_thread():  # the same command again, here
        assert run_main(capsys, *batch, "--seeds", "1-2", "--out-dir", tmp_path / "killed")[0] == 0
    for folder, seeds in (("shared", (1, 2, 3, 4)), ("killed", (1, 2))):
        for seed in seeds:
            a, b = (json.loads((tmp_path / d / f"seed_{seed}" / "metrics.json").read_text()) for d in ("one", folder))
            assert comparable(a) == comparable(b), (folder, seed)
        record = json.loads((tmp_path / folder / "seeds.json").read_text())
        assert sorted(r["seed"] for r in record["runs"]) == list(seeds) and record["seeds_not_run"] == []


def test_a_batch_of_the_default_recipe_is_recorded_as_the_default(mnist, tmp_path, capsys):
    """research/report.py's headline counts the records named "default": the name must come from the recipe itself
    (whatever precision auto resolves to), and any changed knob makes it "custom"."""
    for extra, name in (([], "default"), (["--rotation", "5"], "custom")):
        out = tmp_path / f"out{len(extra)}"
        assert run_main(capsys, "--data-dir", mnist, "--out-dir", out, "--device", "cpu", "--dry-run", "--seeds", "1",
                        *extra)[0] == 0
        assert json.loads((out / "seeds.json").read_text())["recipe_name"] == name


def test_epochs_at_target_counts_the_epochs_at_or_above_the_target():
    metrics = {"copies": 1, "epochs": [{"test_acc": a, "seconds": 1.0} for a in (99.39, 99.40, 99.52, 99.38)]}
    train.finish_metrics(metrics)
    assert metrics["epochs_at_target"] == 2 and metrics["final_test_acc"] == 99.38 and metrics["best_test_acc"] == 99.52


def test_seed_summary_counts_every_run_against_the_target():
    record = {"seeds_not_run": [4], "runs": [
        {"seed": s, "copy": None, "test_acc": [99.0, a], "seconds": 1.0} for s, a in ((1, 99.40), (2, 99.50), (3, 99.30))]}
    text = format_seed_summary(record, train.TARGET)
    assert "final: mean 99.400 +- 0.100, min 99.30; 2/3 runs ended >= 99.40 %" in text
    assert "not finished: seeds 4" in text


# ---------------------------------------------------------------------------------------------
# the Docker image

def test_the_docker_image_copies_every_module_the_scripts_import():
    """The image runs train.py, evaluate.py and predict.py on their own: a module of ours it leaves out would break
    only the image."""
    copied = next(line.split()[1:-1] for line in (ROOT / "Dockerfile").read_text().splitlines()
                  if line.startswith("COPY") and "train.py" in line)
    needed, todo = set(), ["train.py", "evaluate.py", "predict.py"]
    while todo:  # the scripts' imports of our own modules, and theirs
        needed.add(name := todo.pop())
        for node in ast.walk(ast.parse((ROOT / name).read_text())):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                       [node.module] if isinstance(node, ast.ImportFrom) else [])
            todo += [f"{m}.py" for m in modules if (ROOT / f"{m}.py").is_file() and f"{m}.py" not in needed]
    assert {"model.py", "mnist.py", "rundir.py", "checkpoint.py"} < needed  # the walk finds what it should
    assert needed <= set(copied), f"Dockerfile's COPY leaves out {sorted(needed - set(copied))}"


# ---------------------------------------------------------------------------------------------
# the real data and the GPU, where they are

@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason=f"real MNIST not found at {SHARED_DATA}")
def test_dry_run_on_real_mnist(tmp_path, capsys):
    code, stdout, _ = run_main(capsys, "--data-dir", SHARED_DATA, "--out-dir", tmp_path, "--device", "cpu", "--dry-run")
    assert code == 0
    assert "Accuracy: " in stdout and "/10000 (" in stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"][0]["epoch"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available here")
def test_cuda_run(mnist, tmp_path, capsys):
    code, stdout, _ = run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path, *FAST[:-2], "--device", "cuda")
    assert code == 0 and "device:  cuda" in stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["device"].startswith("cuda")


# ---------------------------------------------------------------------------------------------
# precision: bf16 only where the hardware computes it

@pytest.mark.parametrize("amx, avx512_bf16, isa_cap, expected", [
    (True, False, None, "bf16"),          # Xeon with AMX
    (False, True, None, "bf16"),          # AVX512-BF16 (e.g. Zen 4, Cooper Lake)
    (False, False, None, "fp32"),         # AVX2-only: bf16 would be emulated, 3.5x slower
    (True, True, "AVX2", "fp32"),         # oneDNN capped below its bf16 kernels
    (True, False, "AVX512_CORE_AMX", "bf16"),
])
def test_auto_precision_on_cpus(monkeypatch, amx, avx512_bf16, isa_cap, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    if isa_cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa_cap)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    precision, why = train.pick_precision("auto", torch.device("cpu"))
    assert precision == expected and why
    assert train.pick_precision("bf16", torch.device("cpu"))[0] == "bf16"  # forcing still works
    assert train.pick_precision("fp32", torch.device("cpu"))[0] == "fp32"


@pytest.mark.parametrize("capability, expected", [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp32"), ((7, 0), "fp32")])
def test_auto_precision_on_gpus(monkeypatch, capability, expected):
    """Ampere and later compute bf16; a T4 (7.5) or V100 (7.0) only emulates it."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a GPU")
    tf32 = lambda: (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    saved = tf32()  # pick_precision sets these globals: restored below
    try:
        precision, why = train.pick_precision("auto", torch.device("cuda"))
        assert precision == expected and f"{capability[0]}.{capability[1]}" in why
        # fp32 on a GPU is IEEE fp32, as on a CPU: cuDNN's default TF32 convolutions round almost like bf16
        assert tf32() == (expected == "bf16",) * 2
        train.pick_precision("fp32", torch.device("cuda"))
        assert tf32() == (False, False)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert train.pick_precision("auto", torch.device("mps"))[0] == "fp32"


def test_run_records_and_prints_the_precision_it_used(mnist, tmp_path, capsys):
    code, stdout, _ = run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "out", *FAST, "--epochs", "1")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    expected, why = train.pick_precision("auto", torch.device("cpu"))
    assert code == 0 and metrics["precision"] == expected and metrics["precision_why"] == why
    assert stdout.splitlines()[0] == f"precision: {expected} ({why})"  # once, before the documented log
    assert stdout.count("precision: ") == 1


# ---------------------------------------------------------------------------------------------
# recipe knobs the study searches

def test_scale_resizes_about_the_centre_and_costs_no_random_numbers_when_off():
    x = torch.full((1, 1, 28, 28), -MNIST_MEAN / MNIST_STD)
    x[..., 10:18, 10:18] = 2.0  # an 8x8 square in the middle
    bright = lambda img: int((img > 0.5).sum())
    bigger = warp(x, torch.zeros(1), torch.zeros(1, 2), torch.tensor([1.5]))
    assert 12 ** 2 * 0.8 < bright(bigger) < 12 ** 2 * 1.2 and bigger[0, 0, 14, 14] > 1.9
    assert torch.allclose(warp(x, torch.zeros(1), torch.zeros(1, 2), torch.ones(1)), x, atol=1e-5)
    draws = []
    for scale in (0.0, 0.0, 0.1):
        torch.manual_seed(0)
        augment(x, rotation=7, shift=0, scale=scale)
        draws.append(torch.rand(1).item())
    assert draws[0] == draws[1] != draws[2]  # scale 0 leaves the random stream (and old runs) as they were


def test_validation_holds_out_the_same_training_images_for_every_seed():
    data = (torch.arange(100.0).view(100, 1, 1, 1), torch.arange(100), torch.zeros(5, 1, 1, 1), torch.zeros(5))
    a, b = hold_out(data, 20), hold_out(data, 20)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    train_x, train_y, val_x, val_y = a
    assert len(train_x) == 80 and len(val_x) == 20
    assert set(train_y.tolist()).isdisjoint(val_y.tolist()) and len(set(train_y.tolist()) | set(val_y.tolist())) == 100
    with pytest.raises(train.Fail, match="--validation"):
        hold_out(data, 100)


def test_validation_run_reports_on_held_out_images_not_the_test_set(mnist, tmp_path, capsys):
    code, stdout, _ = run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "out", *FAST, "--epochs", "1",
                               "--validation", "16")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert code == 0 and "Validation set: Average loss" in stdout and "Test set" not in stdout
    assert "/16 (" in stdout and "/80 (" in stdout and metrics["evaluated_on"].startswith("validation")


def test_snapshots_per_epoch_enter_the_average_and_bn_decay_can_spare_batchnorm(mnist, tmp_path):
    recipe = train.Recipe(epochs=2, batch_size=32, average_epochs=2, ema=0.0, snapshots=3, bn_decay=False)
    device = torch.device("cpu")
    data = load_mnist(mnist, device)
    run = train.new_run(recipe, 1, device)
    decays = {p.ndim: g["weight_decay"] for g in run.optimizer.param_groups for p in g["params"]}
    assert decays == {4: recipe.weight_decay, 1: 0.0}  # conv weights decay, BatchNorm weights and biases do not
    for epoch in range(2):
        train.train_epoch(run, recipe, data, device, log=False)
    assert run.averaged.n_averaged.item() == 6  # 3 snapshots in each of the 2 averaged epochs


def test_ema_follows_every_step_of_the_averaged_epochs(mnist):
    recipe = train.Recipe(epochs=2, batch_size=32, average_epochs=1, ema=0.9)
    device = torch.device("cpu")
    data = load_mnist(mnist, device)
    run = train.new_run(recipe, 1, device)
    model, averaged = run.model, run.averaged
    steps = []  # the weights after each optimizer step
    run.optimizer.register_step_post_hook(lambda *_: steps.append([p.detach().clone() for p in model.parameters()]))
    for epoch in range(2):
        train.train_epoch(run, recipe, data, device, log=False)
    last_epoch = steps[len(steps) // 2:]  # 96 images in batches of 32: 3 steps an epoch, the second one averaged
    assert averaged.n_averaged.item() == len(last_epoch) == 3
    expected = last_epoch[0]  # an EMA starts at the first weights it sees, then moves 10 % towards each step's
    for weights in last_epoch[1:]:
        expected = [0.9 * e + 0.1 * w for e, w in zip(expected, weights)]
    for p, e in zip(averaged.module.parameters(), expected):
        assert torch.allclose(p, e, atol=1e-6)
    assert not torch.allclose(next(averaged.module.parameters()), torch.stack([w[0] for w in last_epoch]).mean(0))


def test_update_average_is_averaged_models_own_update_bit_for_bit():
    torch.manual_seed(0)
    model = Net()
    ours, theirs = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9)) for _ in range(2))
    for _ in range(4):  # the first call copies, the rest move 10 % towards the new weights
        train.update_average(ours, model, 0.9)
        theirs.update_parameters(model)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
    assert ours.n_averaged.item() == theirs.n_averaged.item() == 4
    assert all(torch.equal(a, b) for a, b in zip(ours.module.parameters(), theirs.module.parameters()))
    assert not torch.equal(next(ours.module.parameters()), next(model.parameters()))


def test_copies_train_independent_networks_and_report_each(mnist, tmp_path, capsys):
    code, stdout, _ = run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "out", *FAST, "--copies", "3",
                               "--epochs", "2")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert code == 0 and metrics["params"] == 7830 and metrics["copies"] == 3
    runs = metrics["copy_runs"]
    assert [r["copy"] for r in runs] == [0, 1, 2]
    for e in metrics["epochs"]:  # the printed and recorded accuracy is the copies' mean
        assert e["test_acc"] == pytest.approx(sum(e["copy_test_accs"]) / 3)
    assert [r["test_accs"] for r in runs] == [list(a) for a in zip(*(e["copy_test_accs"] for e in metrics["epochs"]))]
    assert len({tuple(r["test_accs"]) for r in runs}) > 1  # own initialisation and batches: they differ
    assert "Test accuracy of each copy: " in stdout and "3 copies: final mean" in stdout
    assert "Total params: 7,830" in stdout  # the table shows the one network



def test_the_readmes_flags_table_gives_the_recipes_own_defaults():
    """README's table of the recipe's flags is written by hand: it must name every user-facing knob with the default
    Recipe declares, so that the two cannot drift apart."""
    table = {m[1]: m[2].strip() for m in re.finditer(r"^\| `--([a-z-]+)[^|]*\| ([^|]+)\|", (ROOT / "README.md").read_text(), re.M)}
    for f in dataclasses.fields(train.Recipe):
        flag = f.name.replace("_", "-")
        if f.metadata["study"]:
            assert flag not in table, f"--{flag} is a study knob: README lists it apart, not in the user's table"
        elif f.name == "average_epochs":
            assert table[flag].startswith(str(train.Recipe().average_epochs) + " ")
        else:
            assert table[flag] == str(f.default), f"README says --{flag} defaults to {table[flag]}, Recipe {f.default}"
