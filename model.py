"""The 7,830-parameter MNIST network, and its receptive-field table.

python model.py   prints the torchsummary table and the receptive-field table.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d(2, 2) with a faster forward on the CPU, where torch's kernel for NCHW tensors takes 3x as long as
    its channels-last one for this network's 8 x 22 x 22 maps (0.55 against 0.2 ms a step of 64 images, about 4 % of
    a step): the forward runs channels-last, the backward is torch's own, from the same indices. Same values,
    same gradients (test_model.py checks both, ties included)."""

    def __init__(self):
        super().__init__(2, 2)

    def forward(self, x):
        if x.device.type != "cpu":
            return super().forward(x)
        return _ChannelsLastMaxPool.apply(x)


class _ChannelsLastMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y, indices = F.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), 2)
        ctx.save_for_backward(x, indices)
        return y.contiguous()

    @staticmethod
    def backward(ctx, grad):
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, [2, 2], [2, 2], [0, 0], [1, 1],
                                                               False, indices.contiguous())


def conv_block(c_in, c_out, dropout, copies=1):
    """3x3 valid conv (no bias: BatchNorm follows) -> ReLU -> BatchNorm -> Dropout."""
    return nn.Sequential(
        nn.Conv2d(c_in * copies, c_out * copies, 3, bias=False, groups=copies),
        nn.ReLU(),
        nn.BatchNorm2d(c_out * copies),
        nn.Dropout(dropout),
    )


class Net(nn.Module):
    """copies=K puts K independent networks side by side in one: every convolution grouped by copy, and
    BatchNorm, pooling and dropout work per channel anyway. Copy k reads input channel k (N, K, 28, 28) and
    owns output [:, k] (N, K, 10). On a GPU, where this small network is bound by kernel launches, K runs
    train in about the time of one (train.py --copies, research/sweep.py --copies)."""

    def __init__(self, dropout=0.0, copies=1):
        super().__init__()
        self.copies = copies
        k = copies
        self.features = nn.Sequential(
            conv_block(1, 10, dropout, k),   # 26x26
            conv_block(10, 16, dropout, k),  # 24x24
            conv_block(16, 8, dropout, k),   # 22x22
            MaxPool2d(),                     # 11x11: nn.MaxPool2d(2, 2), faster on the CPU
            conv_block(8, 16, dropout, k),   # 9x9
            conv_block(16, 16, dropout, k),  # 7x7
            conv_block(16, 10, dropout, k),  # 5x5
            nn.AdaptiveAvgPool2d(1),         # GAP: 1x1
            nn.Conv2d(10 * k, 10 * k, 1, bias=False, groups=k),  # 1x1 head instead of a Linear layer
        )

    def forward(self, x):
        logits = self.features(x).flatten(1)
        if self.copies > 1:
            logits = logits.unflatten(1, (self.copies, 10))
        return F.log_softmax(logits, dim=-1)


def count_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def receptive_field_table(model, input_size=(1, 28, 28)):
    """Rows (layer, in size, out size, channels, kernel, stride, padding, RF) for each layer that
    changes the receptive field, read off the model's own modules with forward hooks."""
    rows, shapes = [], {}
    spatial = (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, spatial)]
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, (i[0].shape, o.shape)))
             for name, m in layers]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_size))
    model.train(was_training)
    for h in hooks:
        h.remove()

    rf, jump = 1, 1  # receptive field and distance between adjacent outputs, in input pixels
    for name, m in layers:
        (_, c_in, h_in, _), (_, c_out, h_out, _) = shapes[name]
        if isinstance(m, nn.AdaptiveAvgPool2d):  # global pooling: one kernel over the whole map
            kernel, stride, padding = h_in, h_in, 0
        else:
            kernel, stride, padding = (_first(v) for v in (m.kernel_size, m.stride, m.padding))
        rf += (kernel - 1) * jump
        jump *= stride
        kind = type(m).__name__
        rows.append((f"{name} {kind}", h_in, h_out, f"{c_in}->{c_out}", kernel, stride, padding, rf))
    return rows


def _first(v):
    return v[0] if isinstance(v, tuple) else v


def format_rf_table(rows):
    header = ("layer", "in", "out", "channels", "k", "s", "p", "RF")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "-" * len(line(header))] + [line(r) for r in rows])


if __name__ == "__main__":
    from torchsummary import summary

    net = Net()
    summary(net, (1, 28, 28), device="cpu")
    print("Receptive field")
    print(format_rf_table(receptive_field_table(net)))
