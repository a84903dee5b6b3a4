"""The network's contract: size, building blocks, output and receptive field."""
import torch
import torch.nn as nn
import pytest
import torch.nn.functional as F

from model import MaxPool2d, Net, count_params, receptive_field_table


def test_parameter_count_is_7830_and_under_8000():
    params = count_params(Net())
    assert params < 8000
    assert params == 7830


def test_uses_batchnorm_dropout_and_global_average_pooling():
    modules = list(Net(dropout=0.05).modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in modules) == 6
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)) for m in modules)
    dropouts = [m for m in modules if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 6 and all(d.p == 0.05 for d in dropouts)


def test_no_linear_layers_and_bias_free_convs():
    modules = list(Net().modules())
    assert not any(isinstance(m, nn.Linear) for m in modules)
    assert all(m.bias is None for m in modules if isinstance(m, nn.Conv2d))


def test_output_is_log_probabilities_of_shape_n_by_10():
    model = Net().eval()
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(5), atol=1e-5)
    assert (out <= 0).all()


def test_receptive_field_reaches_28_and_follows_the_layers():
    rows = receptive_field_table(Net())
    assert rows[-1][-1] >= 28
    # spatial sizes as in the reference: 28 -> 26 -> 24 -> 22 -> 11 -> 9 -> 7 -> 5 -> 1 -> 1
    assert [r[2] for r in rows] == [26, 24, 22, 11, 9, 7, 5, 1, 1]
    assert [r[-1] for r in rows] == [3, 5, 7, 8, 12, 16, 20, 28, 28]


def test_copies_are_independent_networks_side_by_side():
    """Net(copies=3) computes exactly what 3 separate networks with the same weights compute, output and gradients."""
    torch.manual_seed(0)
    nets, grouped = [Net() for _ in range(3)], Net(copies=3)
    assert count_params(grouped) == 3 * 7830
    with torch.no_grad():  # copy k's slice of every grouped weight is network k's weight
        for name, p in grouped.named_parameters():
            p.copy_(torch.cat([dict(n.named_parameters())[name] for n in nets]))
    x, y = torch.randn(3, 8, 1, 28, 28), torch.randint(0, 10, (3, 8))
    out = grouped(x.squeeze(2).transpose(0, 1))  # (8, 3, 28, 28): copy k's images in channel k
    assert out.shape == (8, 3, 10)
    F.nll_loss(out.transpose(1, 2), y.T, reduction="sum").backward()
    for k, net in enumerate(nets):
        own = net(x[k])
        F.nll_loss(own, y[k], reduction="sum").backward()
        assert torch.allclose(out[:, k], own, atol=1e-5)
        for name, p in net.named_parameters():
            g = dict(grouped.named_parameters())[name].grad
            assert torch.allclose(g.unflatten(0, (3, -1))[k], p.grad, atol=1e-4), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ties", [False, True])
def test_faster_max_pool_is_torchs_max_pool_exactly(dtype, ties):
    """model.MaxPool2d changes only the speed: the same values and the same gradients as nn.MaxPool2d(2, 2),
    bit for bit, also where a window holds equal values (after a ReLU many are 0) and the first one must win."""
    torch.manual_seed(0)
    x = torch.randn(6, 8, 22, 22)
    x = (x.relu() if ties else x).to(dtype)
    grad = torch.randn(6, 8, 11, 11).to(dtype)
    results = []
    for pool in (nn.MaxPool2d(2, 2), MaxPool2d()):
        xi = x.clone().requires_grad_()
        y = pool(xi)
        y.backward(grad)
        results.append((y, xi.grad))
    (y0, g0), (y1, g1) = results
    assert torch.equal(y0, y1) and y1.is_contiguous()
    assert torch.equal(g0, g1) and g1.is_contiguous()
    if ties:  # the case was tested: windows whose maximum is held by more than one value
        windows = x.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)
        assert ((windows == windows.amax(-1, keepdim=True)).sum(-1) > 1).any()

