"""Test-only writer of Torch7 binary files, and synthetic checkpoints of the released ResNet-200 layout.

The original ``resnet-200.t7`` cannot be downloaded on the test machines, so the tests write files with
the same module classes, nesting and fields (docs/pretrained.md): fb.resnet.torch's pre-activation bottleneck of
the release (BN-ReLU at the start of every branch, conv-BN projection of the raw input, stride on the
3x3), random weights and running statistics, all parameters optionally flattened into one shared
storage as ``getParameters()`` leaves them.
"""

import struct

import numpy as np

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH, TYPE_BOOLEAN = 0, 1, 2, 3, 4, 5

STAGE_WIDTHS = (64, 128, 256, 512)
RELEASED_BLOCKS = (3, 24, 36, 3)


class Module:
    """A Torch object written as ``V <version>``, its class name and its table of fields."""

    def __init__(self, typename, version=1, **fields):
        self.typename = typename
        self.version = version
        self.fields = fields

    @property
    def modules(self):
        return self.fields.setdefault("modules", [])

    def add(self, module):
        self.modules.append(module)
        return self


class Storage:
    """A float storage that several tensors view (fb.resnet.torch's flattened parameters)."""

    typename, dtype = "torch.FloatStorage", "<f4"

    def __init__(self, data):
        self.data = np.ascontiguousarray(data, dtype=self.dtype)


class LongStorage(Storage):
    """A storage of 64-bit integers, as nn.View keeps its sizes and cudnn convolutions their ``iSize``."""

    typename, dtype = "torch.LongStorage", "<i8"


class TensorView:
    """A tensor of ``shape`` at ``offset`` (0-based) of a shared ``Storage``."""

    def __init__(self, storage, offset, shape):
        self.storage, self.offset, self.shape = storage, offset, tuple(shape)

    def array(self):
        n = int(np.prod(self.shape))
        return self.storage.data[self.offset:self.offset + n].reshape(self.shape)


class _Writer:
    def __init__(self, f):
        self.f = f
        self.index = {}
        self.layout = []  # (offset, width, role) of every field but the string and storage bytes

    def int(self, v, role="int"):
        self.layout.append((self.f.tell(), 4, role))
        self.f.write(struct.pack("<i", v))

    def long(self, v, role="long"):
        self.layout.append((self.f.tell(), 8, role))
        self.f.write(struct.pack("<q", v))

    def string(self, s):
        data = s.encode() if isinstance(s, str) else s
        self.int(len(data), "string length")
        self.f.write(data)

    def _reference(self, obj, kind):
        """Writes the type tag and reference index; True if the object was written before."""
        self.int(kind, "tag")
        key = id(obj)
        if key in self.index:
            self.int(self.index[key][0], "index")
            return True
        self.index[key] = (len(self.index) + 1, obj)  # keep obj alive so its id stays unique
        self.int(self.index[key][0], "index")
        return False

    def object(self, obj):
        if obj is None:
            self.int(TYPE_NIL, "tag")
        elif isinstance(obj, bool):
            self.int(TYPE_BOOLEAN, "tag")
            self.int(1 if obj else 0)
        elif isinstance(obj, (int, float, np.integer, np.floating)):
            self.int(TYPE_NUMBER, "tag")
            self.layout.append((self.f.tell(), 8, "number"))
            self.f.write(struct.pack("<d", float(obj)))
        elif isinstance(obj, str):
            self.int(TYPE_STRING, "tag")
            self.string(obj)
        elif isinstance(obj, (list, tuple)):
            self.table({i + 1: v for i, v in enumerate(obj)}, key=obj)
        elif isinstance(obj, dict):
            self.table(obj)
        elif isinstance(obj, Module):
            if not self._reference(obj, TYPE_TORCH):
                self.string(f"V {obj.version}")
                self.string(obj.typename)
                self.table(obj.fields)
        elif isinstance(obj, Storage):
            if not self._reference(obj, TYPE_TORCH):
                self.string("V 1")
                self.string(obj.typename)
                self.long(obj.data.size, "storage size")
                self.f.write(obj.data.tobytes())
        elif isinstance(obj, TensorView):
            self.tensor(obj.storage, obj.offset, obj.shape, key=obj)
        elif isinstance(obj, np.ndarray):
            storage = Storage(obj.ravel()) if obj.size else None
            self.tensor(storage, 0, obj.shape, key=obj)
        else:
            raise TypeError(f"cannot write {type(obj).__name__} to a Torch7 file")

    def table(self, table, key=None):
        if self._reference(table if key is None else key, TYPE_TABLE):
            return
        self.int(len(table), "table size")
        for k, v in table.items():
            self.object(k)
            self.object(v)

    def tensor(self, storage, offset, shape, key):
        if self._reference(key, TYPE_TORCH):
            return
        self.string("V 1")
        self.string("torch.FloatTensor")
        if storage is None:
            self.int(0)
            self.long(1)
            self.object(None)
            return
        strides = [int(np.prod(shape[i + 1:])) for i in range(len(shape))]
        self.int(len(shape), "dimensions")
        for n in shape:
            self.long(n, "size")
        for s in strides:
            self.long(s, "stride")
        self.long(offset + 1, "offset")
        self.object(storage)


def save(path, obj):
    """Writes ``obj`` (Module / dict / list / numpy array / number / string) as Torch7 binary.

    Returns the file's layout: ``(offset, width, role)`` of every integer and number field (roles
    'tag', 'index', 'table size', 'storage size', 'dimensions', 'size', 'stride', 'offset', ...).
    """
    with open(path, "wb") as f:
        writer = _Writer(f)
        writer.object(obj)
    return writer.layout


def empty():
    return np.zeros((0,), np.float32)


# --------------------------------------------------------------------------------------------------
# The released fb.resnet.torch pre-activation ResNet-200, module for module
# --------------------------------------------------------------------------------------------------


class _Params:
    """Random parameters that keep activations of O(1) through hundreds of residual units."""

    def __init__(self, seed, conv_bias, eps):
        self.rng = np.random.RandomState(seed)
        self.conv_bias = conv_bias
        self.eps = eps

    def conv(self, cls, n_in, n_out, k, stride, pad, scale=1.0):
        std = np.sqrt(2.0 / (k * k * n_out)) * scale
        weight = (self.rng.standard_normal((n_out, n_in, k, k)) * std).astype(np.float32)
        fields = dict(nInputPlane=n_in, nOutputPlane=n_out, kW=k, kH=k, dW=stride, dH=stride, padW=pad,
                      padH=pad, weight=weight, gradWeight=empty(), train=False, output=empty(),
                      gradInput=empty(), _type="torch.FloatTensor")
        if cls.startswith("cudnn."):
            fields.update(groups=1, iSize=LongStorage(np.zeros(4)))
        if self.conv_bias == "zero":
            fields.update(bias=np.zeros((n_out,), np.float32), gradBias=empty())
        elif self.conv_bias == "random":
            fields.update(bias=self.rng.uniform(-0.5, 0.5, n_out).astype(np.float32), gradBias=empty())
        return Module(cls, **fields)

    def bn(self, n, version=2):
        rng = self.rng
        fields = dict(
            eps=self.eps, momentum=0.1, affine=True, train=False, nDim=4,
            weight=rng.uniform(0.5, 1.5, n).astype(np.float32),
            bias=rng.uniform(-0.3, 0.3, n).astype(np.float32),
            running_mean=rng.uniform(-0.3, 0.3, n).astype(np.float32),
            gradWeight=empty(), gradBias=empty(), output=empty(), gradInput=empty(),
            save_mean=empty(), save_std=empty(), _type="torch.FloatTensor",
        )
        var = rng.uniform(0.5, 2.0, n).astype(np.float32)
        if version >= 2:
            fields["running_var"] = var
        else:  # nn before its BatchNormalization version 2 kept 1 / sqrt(var + eps)
            fields["running_std"] = (1.0 / np.sqrt(var.astype(np.float64) + self.eps)).astype(np.float32)
        return Module("nn.SpatialBatchNormalization", version=version, **fields)


def released_preresnet(blocks=RELEASED_BLOCKS, seed=0, classes=1000, conv_bias=None, cudnn=True, eps=1e-5,
                       bn_version=2, with_copy=False, prefix_bn_after_3x3=False, flat_storage=True):
    """The module tree of fb.resnet.torch's released ``resnet-200.t7`` with random weights.

    Args:
        blocks: units per stage ((3, 24, 36, 3) is ResNet-200).
        conv_bias: None (convolutions without bias, cuDNN >= 4), ``'zero'`` or ``'random'``.
        cudnn: cudnn.* classes (as saved from the GPU) or their nn.* equivalents.
        bn_version: 2 (``running_var``) or 1 (older nn: ``running_std``).
        with_copy: put an ``nn.Copy`` in front, as data-type conversion wrappers do.
        prefix_bn_after_3x3: the file as first published, before the fix: the BN after each 3x3 conv
            has ``4 n`` channels.
        flat_storage: views into one shared storage, as ``getParameters()`` leaves a saved model.
    """
    ns = "cudnn." if cudnn else "nn."
    p = _Params(seed, conv_bias, eps)
    relu = lambda: Module(ns + "ReLU", inplace=True, output=empty(), gradInput=empty())  # noqa: E731

    model = Module("nn.Sequential", _type="torch.FloatTensor", output=empty(), gradInput=empty(), train=False)
    if with_copy:
        model.add(Module("nn.Copy", intype="torch.FloatTensor", outtype="torch.FloatTensor",
                         dontCast=True, output=empty(), gradInput=empty()))
    model.add(p.conv(ns + "SpatialConvolution", 3, 64, 7, 2, 3))
    model.add(p.bn(64, bn_version))
    model.add(relu())
    model.add(Module(ns + "SpatialMaxPooling", kW=3, kH=3, dW=2, dH=2, padW=1, padH=1, ceil_mode=False,
                     output=empty(), gradInput=empty()))
    channels = 64
    n_units = sum(blocks)
    for stage, (width, count) in enumerate(zip(STAGE_WIDTHS, blocks)):
        layer = Module("nn.Sequential", output=empty(), gradInput=empty())
        for j in range(count):
            stride = 2 if stage > 0 and j == 0 else 1
            branch = Module("nn.Sequential", output=empty(), gradInput=empty())
            branch.add(p.bn(channels, bn_version)).add(relu())
            branch.add(p.conv(ns + "SpatialConvolution", channels, width, 1, 1, 0))
            branch.add(p.bn(width, bn_version)).add(relu())
            branch.add(p.conv(ns + "SpatialConvolution", width, width, 3, stride, 1))
            branch.add(p.bn(4 * width if prefix_bn_after_3x3 else width, bn_version)).add(relu())
            # Small last convolutions keep the sum of hundreds of branches of moderate size.
            branch.add(p.conv(ns + "SpatialConvolution", width, 4 * width, 1, 1, 0, scale=2.0 / np.sqrt(n_units)))
            if channels != 4 * width:
                shortcut = Module("nn.Sequential", output=empty(), gradInput=empty())
                shortcut.add(p.conv(ns + "SpatialConvolution", channels, 4 * width, 1, stride, 0))
                shortcut.add(p.bn(4 * width, bn_version))
            else:
                shortcut = Module("nn.Identity", output=empty(), gradInput=empty())
            unit = Module("nn.Sequential", output=empty(), gradInput=empty())
            unit.add(Module("nn.ConcatTable", output=[], gradInput=empty()).add(branch).add(shortcut))
            unit.add(Module("nn.CAddTable", inplace=True, output=empty(), gradInput=[]))
            layer.add(unit)
            channels = 4 * width
        model.add(layer)
    model.add(p.bn(channels, bn_version))
    model.add(relu())
    model.add(Module(ns + "SpatialAveragePooling", kW=7, kH=7, dW=1, dH=1, padW=0, padH=0, ceil_mode=False,
                     count_include_pad=True, divide=True, output=empty(), gradInput=empty()))
    model.add(Module("nn.View", size=LongStorage([channels]), numElements=channels, numInputDims=3,
                     output=empty(), gradInput=empty()))
    model.add(Module("nn.Linear",
                     weight=(p.rng.standard_normal((classes, channels)) * np.sqrt(1.0 / channels)).astype(np.float32),
                     bias=p.rng.uniform(-0.1, 0.1, classes).astype(np.float32),
                     gradWeight=empty(), gradBias=empty(), output=empty(), gradInput=empty()))
    if flat_storage:
        flatten_parameters(model)
    return model


PARAMETER_FIELDS = ("weight", "bias", "running_mean", "running_var", "running_std")


def walk(module, path="model"):
    """Yields ``(path, module)`` for the module and all modules inside it, depth first."""
    yield path, module
    for i, child in enumerate(module.fields.get("modules", [])):
        yield from walk(child, f"{path}.modules[{i + 1}]")


def flatten_parameters(model):
    """Makes every parameter and running statistic a view into one shared storage."""
    arrays = [(m, k) for _, m in walk(model) for k in PARAMETER_FIELDS
              if isinstance(m.fields.get(k), np.ndarray) and m.fields[k].size]
    storage = Storage(np.concatenate([m.fields[k].ravel() for m, k in arrays]))
    offset = 0
    for m, k in arrays:
        shape = m.fields[k].shape
        m.fields[k] = TensorView(storage, offset, shape)
        offset += int(np.prod(shape))
    return storage


def parameter(module, key):
    """A parameter of a synthetic module as a numpy array (whether flattened or not)."""
    value = module.fields.get(key)
    return value.array() if isinstance(value, TensorView) else value


def set_parameter(module, key, array):
    """Replaces a parameter with a standalone tensor (e.g. to give it a wrong shape)."""
    module.fields[key] = np.asarray(array, np.float32)
