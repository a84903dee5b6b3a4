"""model.pt and evaluate.py: the saved network is the one the run's last Test set line reports, evaluate.py gives that
line again and draws the mistakes, and every file that is not a trained network is one line."""
import json
import os

import pytest
import torch

import evaluate
import train
from device import autocast
from mnist import MNIST_MEAN, MNIST_STD, load_mnist, shifted
from model import Net
from test_train import (FAST, CodeOnLoad, assert_one_line_error, interrupt_at_call, mnist,  # noqa: F401 (fixtures)
                        no_download, run_main)

CPU = torch.device("cpu")
PNG = b"\x89PNG\r\n\x1a\n"


def evaluate_main(capsys, *argv):
    code = evaluate.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def averaged_weights(checkpoint):
    """The weight average's state_dict in a checkpoint, as a Net's (without AveragedModel's prefix and counter)."""
    return {k.removeprefix("module."): v for k, v in checkpoint["averaged"].items() if k != "n_averaged"}


@pytest.mark.parametrize("extra, averaged", [(["--epochs", "3", "--step-size", "1"], True),  # averages epochs 1-2
                                             (["--average-epochs", "0"], False)])
def test_model_pt_is_the_network_the_run_reported_and_evaluate_gives_its_numbers(mnist, tmp_path, capsys, extra,
                                                                                averaged):
    out = tmp_path / "out"
    code, stdout, _ = run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, *extra)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    reported = [line for line in stdout.splitlines() if line.startswith("Test set:")][-1]

    net = Net()
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))  # the README's lines: no prefix, no extra key
    data = load_mnist(mnist, CPU)
    (loss,), (correct,) = train.evaluate(net, data.test_x, data.test_y, train.Recipe(precision=metrics["precision"]), CPU)
    assert (loss, 100 * correct / len(data.test_x)) == (metrics["epochs"][-1]["test_loss"], metrics["final_test_acc"])
    # the reported network is the weight average where the recipe averages, the trained weights where it does not
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    tested = averaged_weights(checkpoint) if averaged else checkpoint["model"]
    saved = net.state_dict()
    assert saved.keys() == tested.keys() and all(torch.equal(saved[k], tested[k]) for k in saved)
    if averaged:
        assert not torch.equal(saved["features.0.0.weight"], checkpoint["model"]["features.0.0.weight"])

    for model in ("model.pt", "checkpoint.pt"):  # a finished run's checkpoint gives the same network
        code, stdout, _ = evaluate_main(capsys, out / model, "--data-dir", mnist, "--device", "cpu")
        assert code == 0 and reported in stdout.splitlines(), stdout
        assert f"{len(data.test_x) - correct} of {len(data.test_x)} test digits misclassified" in stdout
        table = stdout.split("true\\pred")[1].splitlines()[1:11]
        matrix = [[int(n) for n in row.split()[1:]] for row in table]
        assert sum(map(sum, matrix)) == len(data.test_x) and sum(matrix[d][d] for d in range(10)) == correct
    for picture in ("misclassified.png", "confusion.png"):
        assert (out / picture).read_bytes()[:8] == PNG


def test_evaluate_writes_its_pictures_where_it_is_told(mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--epochs", "1")[0] == 0
    code, _, _ = evaluate_main(capsys, out / "model.pt", "--data-dir", mnist, "--out-dir", tmp_path / "figures")
    assert code == 0 and (tmp_path / "figures" / "misclassified.png").read_bytes()[:8] == PNG
    assert not (out / "misclassified.png").exists()


@pytest.fixture
def finished_run(mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, "--data-dir", mnist, "--out-dir", out, *FAST, "--epochs", "1")[0] == 0
    return out


def test_files_that_are_not_a_trained_network_are_one_line(mnist, tmp_path, capsys, monkeypatch, finished_run):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((finished_run / "model.pt").read_bytes()[:300])
    not_torch = tmp_path / "notes.pt"
    not_torch.write_text("not a network")
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), other)
    cases = {tmp_path / "missing.pt": "no such file", tmp_path: "is a folder", truncated: "damaged or truncated",
             not_torch: "damaged or truncated", other: "weights of another network"}
    for path, words in cases.items():
        code, _, err = evaluate_main(capsys, path, "--data-dir", mnist)
        assert_one_line_error(code, err, str(path), words, "train.py")

    # a checkpoint of a run stopped in its second epoch
    monkeypatch.setattr(train, "evaluate", interrupt_at_call(2, train.evaluate))
    assert run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "cut", *FAST)[0] == 130
    monkeypatch.undo()
    code, _, err = evaluate_main(capsys, tmp_path / "cut" / "checkpoint.pt", "--data-dir", mnist)
    assert_one_line_error(code, err, "unfinished run (1 of 2 epochs)", "--resume")

    assert run_main(capsys, "--data-dir", mnist, "--out-dir", tmp_path / "copies", *FAST, "--copies", "2")[0] == 0
    assert not (tmp_path / "copies" / "model.pt").exists()  # K networks in one: no model.pt
    code, _, err = evaluate_main(capsys, tmp_path / "copies" / "checkpoint.pt", "--data-dir", mnist)
    assert_one_line_error(code, err, "2 networks side by side (--copies)")


def test_a_model_file_that_would_run_code_is_refused_unrun(mnist, tmp_path, capsys, finished_run):
    marker = tmp_path / "marker"
    crafted = torch.load(finished_run / "model.pt", weights_only=True)
    crafted["payload"] = CodeOnLoad(os.mkdir, str(marker))
    torch.save(crafted, tmp_path / "crafted.pt")
    code, _, err = evaluate_main(capsys, tmp_path / "crafted.pt", "--data-dir", mnist)
    assert_one_line_error(code, err, "asks to load", "refused, nothing in it was run")
    assert not marker.exists()


@pytest.mark.parametrize("right, down", [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1)])
def test_a_shifted_copy_is_the_digit_moved_by_whole_pixels_with_background_filled_in(right, down):
    x = torch.randn(3, 1, 28, 28)
    expected = torch.full_like(x, -MNIST_MEAN / MNIST_STD)  # black, normalised: nothing wraps around
    rows, cols = slice(max(down, 0), 28 + min(down, 0)), slice(max(right, 0), 28 + min(right, 0))
    expected[..., rows, cols] = x[..., max(-down, 0):28 - max(down, 0), max(-right, 0):28 - max(right, 0)]
    assert torch.equal(shifted(x, right, down), expected)
    assert torch.equal(shifted(x, 0, 0), x)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_averaging_over_one_copy_is_the_plain_prediction_bit_for_bit(precision):
    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(7, 1, 28, 28)
    with torch.no_grad(), autocast(CPU, precision):
        plain = net(x).float().exp()
        copies = [net(shifted(x, right, down)).float().exp() for right, down in evaluate.SHIFTS]
    assert torch.equal(evaluate.probabilities(net, x, precision), plain)
    assert torch.equal(evaluate.probabilities(net, x, precision, shifts=True), torch.stack(copies).mean(0))
    assert len(evaluate.SHIFTS) == 5 and evaluate.SHIFTS[0] == (0, 0)


def test_evaluate_with_shifts_prints_the_averaged_figure_beside_the_plain_one(mnist, capsys, finished_run):
    code, plain, _ = evaluate_main(capsys, finished_run / "model.pt", "--data-dir", mnist)
    code, both, _ = evaluate_main(capsys, finished_run / "model.pt", "--data-dir", mnist, "--shifts")
    reported = next(line for line in plain.splitlines() if line.startswith("Test set:"))
    net, data = Net(), load_mnist(mnist, CPU)
    net.load_state_dict(torch.load(finished_run / "model.pt", weights_only=True))
    precision = json.loads((finished_run / "metrics.json").read_text())["precision"]  # evaluate.py's auto too
    probs = evaluate.probabilities(net.eval(), data.test_x, precision, shifts=True)
    right = int((probs.argmax(1) == data.test_y).sum())
    assert code == 0 and reported in both.splitlines()  # the plain figure, as without --shifts
    assert f"Averaged over the digit and its 4 one-pixel shifts: Accuracy: {right}/40 " in both
