"""What the lab's tests share: train.py's tiny synthetic MNIST and its guard against downloads (test_train.py),
and one such MNIST per test module."""
import pytest

from test_train import no_download, write_mnist  # noqa: F401 (no_download: autouse, for these tests too)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 training images (250 to train on, 50 held out by --validation 50) and 40 test images: a recipe that
    learns gets well above 10 %."""
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, n_train=300)
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """96 training images and 40 test images: for whole 15-epoch runs, where only the numbers' flow is checked."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_mnist(root)
    return root
