"""What a user of the Docker image meets: a GPU that torch cannot use is named with the driver it needs, and a folder
that cannot be written is named as a permission problem (with the container's fix), never as a network problem.
The checks (environment, devices, torch's CUDA, file permissions) are monkeypatched: no Docker or GPU needed."""
import os
import re
from pathlib import Path

import pytest
import torch
import torchvision

import errors
import rundir
import device
import train
from test_train import FAST, assert_one_line_error, no_download, run_main, write_mnist  # noqa: F401 (autouse)

ROOT = Path(__file__).parent
GIVEN = {"NVIDIA_VISIBLE_DEVICES": "all"}  # what docker run --gpus all sets in the container


@pytest.mark.parametrize("environ, devices", [(GIVEN, []), ({}, ["/dev/nvidia0"]),
                                              ({"NVIDIA_VISIBLE_DEVICES": "GPU-5a1b,1"}, [])])
def test_a_gpu_torch_cannot_use_is_one_line_naming_the_driver(environ, devices):
    warning = device.gpu_not_used_warning(environ, False, "13.0", devices)
    assert warning.startswith("warning: ") and "\n" not in warning
    assert "R580 series or newer" in warning and "CUDA 13.0" in warning and "on the CPU" in warning
    assert (environ.get("NVIDIA_VISIBLE_DEVICES") or devices[0]) in warning


@pytest.mark.parametrize("environ, cuda_available, devices", [
    ({}, False, []),  # no GPU given: the CPU is expected, nothing to say
    ({"NVIDIA_VISIBLE_DEVICES": "void"}, False, []),  # docker run --gpus 0, and what CDI sets
    ({"NVIDIA_VISIBLE_DEVICES": "none"}, False, []),
    ({"NVIDIA_VISIBLE_DEVICES": ""}, False, []),
    (GIVEN, True, ["/dev/nvidia0"]),  # the GPU works
])
def test_no_warning_without_a_gpu_or_when_it_works(environ, cuda_available, devices):
    assert device.gpu_not_used_warning(environ, cuda_available, "13.0", devices) is None


def test_the_warning_names_a_cpu_only_torch_and_other_cuda_releases():
    assert "CPU-only build" in device.gpu_not_used_warning(GIVEN, False, None, [])
    assert "R525 series" in device.gpu_not_used_warning(GIVEN, False, "12.8", [])
    assert "driver for CUDA 14" in device.gpu_not_used_warning(GIVEN, False, "14.1", [])


def test_device_auto_says_why_it_trains_on_the_cpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    assert device.pick_device("auto").type == "cpu"
    assert pick_device_stderr(capsys).count("R580") == 1
    assert device.pick_device("cpu").type == "cpu"  # asked for the CPU: nothing to warn about
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "void")
    if not list(Path("/dev").glob("nvidia[0-9]*")):
        assert device.pick_device("auto").type == "cpu"
        assert pick_device_stderr(capsys) == ""


def pick_device_stderr(capsys):
    return capsys.readouterr().err


@pytest.fixture
def not_writable(monkeypatch):
    """os.access says no for the folders under the ones given (the tests may run as root, who may write anything)."""
    folders = []
    real = os.access

    def access(path, mode, **kw):
        if mode & os.W_OK and any(Path(path).resolve().is_relative_to(f.resolve()) for f in folders):
            return False
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)
    return folders.append


@pytest.fixture(params=[False, True], ids=["host", "container"])
def container(request, monkeypatch):
    """On the host or in a container, running as uid 4321, which owns none of the test's folders (as the container's
    user owns none of the folders that docker run created)."""
    monkeypatch.setattr(errors, "in_container", lambda: request.param)
    monkeypatch.setattr(os, "getuid", lambda: 4321)
    return request.param


def assert_names_the_permission_fix(err, in_container):
    assert "no network" not in err
    assert "Permission denied" in err or "not writable" in err
    assert "uid 4321" in err and "belongs to uid" in err
    if in_container:
        assert 'mkdir -p data out' in err and '--user "$(id -u):$(id -g)"' in err
    else:
        assert "docker" not in err


def test_an_unwritable_data_dir_is_a_permission_problem_not_the_network(tmp_path, capsys, not_writable, container):
    data = tmp_path / "data"  # empty, as docker run creates it (owned by root, not writable by the container's user)
    data.mkdir()
    not_writable(data)
    code, _, err = run_main(capsys, "--data-dir", data, "--out-dir", tmp_path / "out", *FAST)
    assert_one_line_error(code, err, str(data / "MNIST" / "raw"), "not writable", "--data-dir")
    assert_names_the_permission_fix(err, container)


def test_a_permission_error_during_the_download_is_named_as_one(tmp_path, capsys, monkeypatch, container):
    def refuse(root, train, download):
        raise PermissionError(13, "Permission denied", str(Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte"))

    monkeypatch.setattr(torchvision.datasets, "MNIST", refuse)
    code, _, err = run_main(capsys, "--data-dir", tmp_path / "data", "--out-dir", tmp_path / "out", *FAST)
    assert_one_line_error(code, err, "train-images-idx3-ubyte", "Permission denied")
    assert_names_the_permission_fix(err, container)


def test_the_network_is_blamed_only_when_the_download_failed(tmp_path, capsys):
    code, _, err = run_main(capsys, "--data-dir", tmp_path / "data", "--out-dir", tmp_path / "out", *FAST)
    assert_one_line_error(code, err, "download failed (no network?)")  # no_download: no mirror answers
    assert "writable" not in err


def test_an_unwritable_out_dir_names_the_fix(tmp_path, capsys, not_writable, container):
    write_mnist(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    not_writable(out)
    code, _, err = run_main(capsys, "--data-dir", tmp_path / "data", "--out-dir", out, *FAST)
    assert_one_line_error(code, err, f"--out-dir {out} is not writable")
    assert_names_the_permission_fix(err, container)


def test_an_out_dir_that_cannot_be_created_for_permission_names_the_fix(tmp_path, monkeypatch, container):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(errors.Fail, match="cannot be created \\(Permission denied\\)") as e:
        rundir.prepare_out_dir(tmp_path / "out")
    assert_names_the_permission_fix(str(e.value), container)


def test_a_folder_of_ones_own_that_cannot_be_written_is_read_only(tmp_path, not_writable):
    out = tmp_path / "out"  # e.g. a -v mount with :ro, or a folder without w
    out.mkdir()
    not_writable(out)
    with pytest.raises(errors.Fail, match=f"is not writable: {out} is this process's .* but read-only"):
        rundir.prepare_out_dir(out)


def test_the_image_tells_train_py_it_is_a_container_and_the_readme_cleans_up():
    """MNIST_TRAINER_IMAGE selects the container's fix in the messages above; every docker run in the README has
    --rm (stopped containers do not pile up) and runs as the calling user (the folders' owner)."""
    assert re.search(r"^\s*MNIST_TRAINER_IMAGE=1\b", (ROOT / "Dockerfile").read_text(), re.M)
    runs = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("docker run")]
    assert runs and all("--rm" in line for line in runs), [line for line in runs if "--rm" not in line]
    assert all('--user "$(id -u):$(id -g)"' in line for line in runs if "-v" in line)


def read_lock(name):
    """A uv lock's pins ({package: release}) and the packages its footer says it leaves out."""
    pins, left_out, footer = {}, [], False
    for line in (ROOT / name).read_text().splitlines():
        if line == "# The following packages were excluded from the output:":
            footer = True
        elif footer and line.startswith("# "):
            left_out.append(line[2:])
        elif m := re.match(r"([A-Za-z0-9._-]+)==(\S+)", line):
            pins[m[1]] = m[2]
    return pins, left_out


def test_the_image_leaves_out_triton_and_the_locks_agree():
    """requirements.lock leaves out triton (only torch.compile uses it; nothing here calls that): uv's
    --no-emit-package, named in the lock's footer, and the image installs the lock with --no-deps (pip would pull
    triton back in with torch otherwise; .ci/docker-smoke checks the image). The dev lock, generated with
    -c requirements.lock, pins every package of the image's at the same release, and triton too, which
    pip install -r requirements-dev.txt -c requirements-dev.lock installs with torch."""
    image, image_left_out = read_lock("requirements.lock")
    dev, dev_left_out = read_lock("requirements-dev.lock")
    assert "torch" in image and "triton" not in image and image_left_out == ["triton"]
    assert "--no-emit-package triton" in (ROOT / "requirements.lock").read_text().splitlines()[1]
    assert {name: dev.get(name) for name in image} == image
    assert "triton" in dev and dev_left_out == []
    assert re.search(r"^RUN pip install --no-cache-dir --no-deps -r requirements\.lock\b",
                     (ROOT / "Dockerfile").read_text(), re.M)
