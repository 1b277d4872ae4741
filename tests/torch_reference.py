"""An independent PyTorch implementation of the released fb.resnet.torch pre-activation ResNet-200.

Written from the released checkpoint's layout (docs/pretrained.md) alone and sharing no code with ``keras_preresnet``: the network is PyTorch
modules, the ``.t7`` is read with the PyPI ``torchfile`` package (not ``keras_preresnet.pretrained.torch7``), and
conv biases are kept as biases (not folded), so it checks the converter's reading, mapping, layout
transposes and bias folding all at once.
"""

import numpy as np
import torch
import torchfile
from torch import nn
from torch.nn import functional as F


def _t(array):
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _conv(module):
    weight = np.asarray(module.weight)
    conv = nn.Conv2d(int(module.nInputPlane), int(module.nOutputPlane), (int(module.kH), int(module.kW)),
                     stride=(int(module.dH), int(module.dW)), padding=(int(module.padH), int(module.padW)),
                     bias=True)
    conv.weight.data = _t(weight.reshape(conv.weight.shape))
    bias = module.bias
    conv.bias.data = _t(bias) if bias is not None and np.size(bias) else torch.zeros(conv.out_channels)
    return conv


def _bn(module):
    gamma = np.asarray(module.weight)
    bn = nn.BatchNorm2d(gamma.shape[0], eps=float(module.eps))
    bn.weight.data, bn.bias.data = _t(gamma), _t(module.bias)
    bn.running_mean.data = _t(module.running_mean)
    if module.running_var is not None:
        bn.running_var.data = _t(module.running_var)
    else:  # older nn: running_std = 1 / sqrt(var + eps)
        bn.running_var.data = _t(np.asarray(module.running_std, np.float64) ** -2 - float(module.eps))
    return bn


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1, plus x or conv-BN(x) on the raw input."""

    def __init__(self, unit):
        super().__init__()
        concat, add = unit.modules
        assert concat.torch_typename() == b"nn.ConcatTable" and add.torch_typename() == b"nn.CAddTable"
        branch, shortcut = concat.modules
        m = branch.modules
        self.bn1, self.conv1 = _bn(m[0]), _conv(m[2])
        self.bn2, self.conv2 = _bn(m[3]), _conv(m[5])
        self.bn3, self.conv3 = _bn(m[6]), _conv(m[8])
        if shortcut.torch_typename() == b"nn.Identity":
            self.projection = None
        else:
            conv, bn = shortcut.modules
            self.projection = nn.Sequential(_conv(conv), _bn(bn))

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.projection is None else self.projection(x))


class ReleasedPreActResNet(nn.Module):
    """Stem conv-BN-ReLU-maxpool, four stages of bottlenecks, BN-ReLU-avgpool(7)-Linear."""

    def __init__(self, t7_path):
        super().__init__()
        root = torchfile.load(t7_path)
        modules = [m for m in root.modules if m.torch_typename() != b"nn.Copy"]
        (conv, bn, _relu, pool, *stages, post_bn, _relu2, avg, _view, linear) = modules
        assert len(stages) == 4, "the released layout has four stages"
        self.conv1, self.bn1 = _conv(conv), _bn(bn)
        self.pool = nn.MaxPool2d((int(pool.kH), int(pool.kW)), (int(pool.dH), int(pool.dW)),
                                 (int(pool.padH), int(pool.padW)))
        self.stages = nn.Sequential(*[nn.Sequential(*[PreActBottleneck(u) for u in s.modules]) for s in stages])
        self.blocks = tuple(len(s.modules) for s in stages)
        self.post_bn = _bn(post_bn)
        self.avg = nn.AvgPool2d((int(avg.kH), int(avg.kW)), (int(avg.dH), int(avg.dW)))
        self.fc = nn.Linear(*np.asarray(linear.weight).shape[::-1])
        self.fc.weight.data, self.fc.bias.data = _t(linear.weight), _t(linear.bias)
        self.eval()

    def features(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.stages(x)
        return torch.flatten(self.avg(F.relu(self.post_bn(x))), 1)

    def forward(self, x):
        return self.fc(self.features(x))

    def logits(self, images_nhwc):
        """Logits for float32 NHWC images (already preprocessed)."""
        with torch.no_grad():
            return self(_nchw(images_nhwc)).numpy()


def _nchw(images_nhwc):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(images_nhwc, (0, 3, 1, 2)), np.float32))


def save_with_centred_classifier(checkpoint, path, images):
    """Saves a synthetic checkpoint whose classifier is centred on ``images`` and scaled to unit logits.

    Average-pooled features of a random network are dominated by a constant; without this, every
    image would get the same top-5 and top-5 agreement would prove little.
    """
    import torch7_writer

    torch7_writer.save(path, checkpoint)
    with torch.no_grad():
        features = ReleasedPreActResNet(path).features(_nchw(images)).numpy().astype(np.float64)
    linear = checkpoint.modules[-1]
    weight = torch7_writer.parameter(linear, "weight").astype(np.float64)
    mean_feature = features.mean(axis=0)
    weight = weight / ((features - mean_feature) @ weight.T).std()
    torch7_writer.set_parameter(linear, "weight", weight)
    torch7_writer.set_parameter(linear, "bias", -weight @ mean_feature)
    torch7_writer.save(path, checkpoint)
    return path


def centred_checkpoint(path, images, **options):
    """Writes a synthetic released-layout checkpoint (``torch7_writer.released_preresnet(**options)``)
    centred on ``images``; returns its path and the reference logits of ``images``."""
    import torch7_writer

    save_with_centred_classifier(torch7_writer.released_preresnet(**options), str(path), images)
    return str(path), ReleasedPreActResNet(str(path)).logits(images)
