"""The reference CIFAR recipe of fb.resnet.torch, rewritten in PyTorch: the peer of bench/fidelity.py.

Written from facebook/fb.resnet.torch (models/resnet.lua, models/preresnet.lua, train.lua,
datasets/cifar10.lua, datasets/transforms.lua) and Torch's optim.sgd, sharing no code with the trainer:

* networks: ``models/resnet.lua`` CIFAR ResNet (3x3 conv 16 - BN - ReLU, three stages of basic units
  conv-BN-ReLU-conv-BN, + shortcut, ReLU after the addition, 8x8 average pool, Linear) and
  ``models/preresnet.lua`` (full pre-activation units BN-ReLU-conv-BN-ReLU-conv; no BN after the stem
  conv; the first unit of every stage shares its BN-ReLU with the shortcut ('both_preact'); BN-ReLU
  before the pool). Shortcuts are option A: 1x1 average pool of stride 2 (a subsample) and zero channels
  appended (``nn.Concat(2):add(nn.Identity()):add(nn.MulConstant(0))``).
* initialisation (``createModel``'s ConvInit/BNInit): conv weights N(0, sqrt(2 / (k * k * out_channels))),
  no conv bias; BN gamma 1, beta 0 (eps 1e-5, momentum 0.1 as nn.SpatialBatchNormalization); Linear weight
  Torch's default U(+-1/sqrt(fan_in)), its bias zero.
* optimiser (train.lua's optimState, optim.sgd): momentum 0.9, dampening 0, Nesterov (train.lua sets it;
  ``nesterov=False`` for the plain heavy-ball form), weight decay added to the gradient of every parameter,
  the learning rate applied outside the momentum (v = m v + g; w -= lr (g + m v) or lr v).
  ``torch.optim.SGD`` implements exactly this update, the first step included (its buffer starts as g,
  as optim.sgd's ``state.dfdx`` does).
* data (datasets/cifar10.lua): training: ColorNormalize, HorizontalFlip(0.5), RandomCrop(32, 4) with zero
  padding after the normalisation; test: the normalised image. Mean cross-entropy (nn.CrossEntropyCriterion).

The learning rate per step is given (the schedule the trainer reports), so both implementations see the
same rates at the same steps.
"""

import math
import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# fb.resnet.torch CIFAR layout: stage widths, and the stride of each stage's first unit.
WIDTHS = (16, 32, 64)
STRIDES = (1, 2, 2)
PADDING = 4  # RandomCrop(32, 4)
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # nn.SpatialBatchNormalization defaults
UNITS = ("original", "full_preactivation", "plain")


def units_per_stage(depth):
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR basic-unit depth must be 6n+2 (20, 32, 44, 56, 110); received {depth}.")
    return (depth - 2) // 6


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _conv3x3(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def option_a(x, out_channels, stride):
    """The strided, zero-padded identity: subsample by ``stride``, append zero channels."""
    if stride != 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x


class BasicUnit(nn.Module):
    """models/resnet.lua basicblock: conv-BN-ReLU-conv-BN, + option-A shortcut (none when plain), ReLU."""

    def __init__(self, in_channels, out_channels, stride, shortcut=True):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(in_channels, out_channels, stride), _bn(out_channels)
        self.conv2, self.bn2 = _conv3x3(out_channels, out_channels), _bn(out_channels)
        self.out_channels, self.stride, self.shortcut = out_channels, stride, shortcut

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.shortcut:
            y = y + option_a(x, self.out_channels, self.stride)
        return F.relu(y)


class PreActUnit(nn.Module):
    """models/preresnet.lua basicblock: BN-ReLU-conv-BN-ReLU-conv + option-A shortcut. ``both_preact``
    (a stage's first unit): the BN-ReLU runs before the split, so the shortcut takes the pre-activated input."""

    def __init__(self, in_channels, out_channels, stride, both_preact):
        super().__init__()
        self.bn1, self.conv1 = _bn(in_channels), _conv3x3(in_channels, out_channels, stride)
        self.bn2, self.conv2 = _bn(out_channels), _conv3x3(out_channels, out_channels)
        self.out_channels, self.stride, self.both_preact = out_channels, stride, both_preact

    def forward(self, x):
        preact = F.relu(self.bn1(x))
        shortcut = option_a(preact if self.both_preact else x, self.out_channels, self.stride)
        return self.conv2(F.relu(self.bn2(self.conv1(preact)))) + shortcut


class CifarResNet(nn.Module):
    """The fb.resnet.torch CIFAR network of ``depth`` with ``unit`` in ``UNITS``."""

    def __init__(self, depth, unit="original", classes=10):
        super().__init__()
        if unit not in UNITS:
            raise ValueError(f"`unit` must be one of {UNITS}; received {unit!r}.")
        n = units_per_stage(depth)
        preact = unit == "full_preactivation"
        stem = [_conv3x3(3, WIDTHS[0])]
        if not preact:
            stem += [_bn(WIDTHS[0]), nn.ReLU()]
        layers, channels = [], WIDTHS[0]
        for width, stride in zip(WIDTHS, STRIDES):
            for i in range(n):
                s = stride if i == 0 else 1
                if preact:
                    layers.append(PreActUnit(channels, width, s, both_preact=i == 0))
                else:
                    layers.append(BasicUnit(channels, width, s, shortcut=unit == "original"))
                channels = width
        head = [_bn(channels), nn.ReLU()] if preact else []
        self.features = nn.Sequential(*stem, *layers, *head)
        self.fc = nn.Linear(channels, classes)
        self.reset_parameters()

    def reset_parameters(self):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / k))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)  # nn.Linear:reset() in Torch
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.features(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def normalise(images_uint8, mean, std):
    """uint8 NHWC -> float32 NCHW, ColorNormalize."""
    x = (images_uint8.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def augment(x, generator):
    """HorizontalFlip(0.5) then RandomCrop(32, 4) with zero padding, per image, on normalised NCHW ``x``."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (PADDING,) * 4)
    tops = torch.randint(0, 2 * PADDING + 1, (n,), generator=generator)
    lefts = torch.randint(0, 2 * PADDING + 1, (n,), generator=generator)
    rows = (tops[:, None] + torch.arange(h))[:, None, :, None].expand(n, x.shape[1], h, padded.shape[3])
    cols = (lefts[:, None] + torch.arange(w))[:, None, None, :].expand(n, x.shape[1], h, w)
    return padded.gather(2, rows).gather(3, cols)


def initial_loss(model, images, labels, batch):
    """Mean cross-entropy in training mode (batch statistics), before any update, over ``images`` in
    batches of ``batch``; the BN running statistics are restored afterwards."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    losses = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            logits = model(images[start:start + batch])
            losses.append(F.cross_entropy(logits, labels[start:start + batch], reduction="sum").item())
    model.load_state_dict(state)
    return sum(losses) / len(images)


def evaluate(model, images, labels, batch=500):
    model.eval()
    wrong, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            logits = model(images[start:start + batch])
            y = labels[start:start + batch]
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            wrong += (logits.argmax(1) != y).sum().item()
    return {"test_loss": loss / len(images), "test_error": 100.0 * wrong / len(images)}


def train(*, depth, unit, seed, train_data, test_data, initial_data, mean, std, batch, steps_per_epoch,
          total_steps, lr_boundaries, learning_rates, weight_decay=1e-4, momentum=0.9, nesterov=True,
          threads=None, log=print, checkpoint=None):
    """Trains the reference network; returns the initial loss, per-epoch rows and the final figures.

    ``lr_boundaries``/``learning_rates``: ``learning_rates[i]`` from step ``lr_boundaries[i - 1]`` on (steps
    from 0), as the trainer reports its schedule. Each epoch is a fresh permutation (torch.randperm, as
    fb.resnet.torch's DataLoader) cut into ``steps_per_epoch`` full batches (the trainer drops the rest too).
    ``checkpoint``: a file saved after every epoch; a call that finds it continues from that epoch.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    # channels_last: oneDNN's fast CPU convolutions (2-3x here); the arithmetic is the same network's.
    model = CifarResNet(depth, unit).to(memory_format=torch.channels_last)
    x_train, y_train = normalise(train_data[0], mean, std), torch.from_numpy(np.asarray(train_data[1], np.int64))
    x_test, y_test = normalise(test_data[0], mean, std), torch.from_numpy(np.asarray(test_data[1], np.int64))
    x_init, y_init = normalise(initial_data[0], mean, std), torch.from_numpy(np.asarray(initial_data[1], np.int64))
    result = {"params": parameter_count(model), "initial_loss": initial_loss(model, x_init, y_init, batch)}
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rates[0], momentum=momentum, dampening=0.0,
                                nesterov=nesterov, weight_decay=weight_decay)
    rows, step = [], 0
    if checkpoint and os.path.exists(checkpoint):
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        rows, step, result = saved["rows"], saved["step"], saved["result"]
        log(f"torch: resuming after epoch {rows[-1]['epoch']}")
    while step < total_steps:
        epoch = step // steps_per_epoch
        order = torch.randperm(len(x_train), generator=generator)
        model.train()
        loss_sum, wrong_sum, done = 0.0, 0, 0
        started = time.perf_counter()
        for i in range(min(steps_per_epoch, total_steps - step)):
            lr = learning_rates[sum(step >= b for b in lr_boundaries)]
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = order[i * batch:(i + 1) * batch]
            logits = model(augment(x_train[index], generator))
            loss = F.cross_entropy(logits, y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            wrong_sum += (logits.argmax(1) != y_train[index]).sum().item()
            done += 1
            step += 1
        seconds = time.perf_counter() - started
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"PyTorch reference: the training loss became non-finite in epoch {epoch + 1}.")
        row = {"epoch": epoch + 1, "step": step, "learning_rate": lr, "train_loss": loss_sum / done,
               "train_error": 100.0 * wrong_sum / (done * batch), **evaluate(model, x_test, y_test),
               "epoch_seconds": seconds, "images_per_second": done * batch / seconds}
        rows.append(row)
        if checkpoint:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rows": rows,
                        "generator": generator.get_state(), "step": step, "result": result}, checkpoint + ".tmp")
            os.replace(checkpoint + ".tmp", checkpoint)
        log(f"torch epoch {row['epoch']}: train loss {row['train_loss']:.4f}, test error {row['test_error']:.2f}%, "
            f"{row['images_per_second']:.1f} images/s")
    result.update(rows=rows, final_test_error=rows[-1]["test_error"])
    return result
