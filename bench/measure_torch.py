"""Measures the PyTorch peer of a workload, eager or under torch.compile, bf16 autocast, channels_last.

ImageNet layout: timm's ``ResNetV2`` (pre-activation bottlenecks) with BatchNorm, as GPU.md names it.
CIFAR layout: ``PreActBottleneckResNet`` below, the layout keras_preresnet builds for ResNet-164/1001
(3x3 stem of 16 channels, three stages of bottlenecks 16/32/64 wide x 4, the stride on a stage's
first 1x1, the first unit's projection taken from its pre-activation).
"""

from bench import child
from bench import workloads as wl


def _cifar_model(torch, blocks, classes):
    nn = torch.nn

    class PreActBottleneck(nn.Module):
        """Full pre-activation bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1, + shortcut."""

        def __init__(self, in_channels, width, stride, project):
            super().__init__()
            out = 4 * width
            self.bn1 = nn.BatchNorm2d(in_channels)
            self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, out, 1, bias=False)
            self.shortcut = nn.Conv2d(in_channels, out, 1, stride=stride, bias=False) if project else None

        def forward(self, x):
            preact = torch.relu(self.bn1(x))
            shortcut = x if self.shortcut is None else self.shortcut(preact)
            y = self.conv1(preact)
            y = self.conv2(torch.relu(self.bn2(y)))
            y = self.conv3(torch.relu(self.bn3(y)))
            return y + shortcut

    class PreActBottleneckResNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [nn.Conv2d(3, 16, 3, padding=1, bias=False)]
            channels = 16
            for width, stride, units in zip((16, 32, 64), (1, 2, 2), blocks):
                for unit in range(units):
                    layers.append(PreActBottleneck(channels, width, stride if unit == 0 else 1, unit == 0))
                    channels = 4 * width
            layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(channels, classes)

        def forward(self, x):
            return self.fc(self.features(x))

    return PreActBottleneckResNet()


def _imagenet_model(blocks, classes):
    try:
        import timm.layers
        from timm.models.resnetv2 import ResNetV2
    except ImportError as error:
        raise child.Skip(f"timm is not importable ({error}); pip install timm")
    model = ResNetV2(
        layers=list(blocks), num_classes=classes, conv_layer=timm.layers.create_conv2d,
        norm_layer=timm.layers.BatchNormAct2d,
    )
    return model, dict(model=f"timm ResNetV2 layers={list(blocks)}", timm=timm.__version__)


def measure(spec):
    try:
        import torch
    except ImportError as error:
        raise child.Skip(f"PyTorch is not importable ({error})")
    if spec["device"] == "gpu" and not torch.cuda.is_available():
        raise child.Skip("PyTorch sees no CUDA device")
    device = "cuda" if spec["device"] == "gpu" else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    workload, batch, size = spec["workload"], spec["batch_size"], spec["image_size"]
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True

    def build():
        if workload["layout"] == "imagenet":
            return _imagenet_model(wl.blocks(workload), workload["classes"])
        return _cifar_model(torch, wl.blocks(workload), workload["classes"]), dict(
            model=f"bench PreActBottleneckResNet, units per stage {wl.blocks(workload)}")

    (model, details), build_s = child.timed(build)
    model = model.to(device, memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    compiled = spec["implementation"] == "torch_compile"
    forward = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, workload["classes"], (batch,), device=device)
    autocast = lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)  # noqa: E731

    if workload["mode"] == "train":
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step():
            with autocast():
                loss = torch.nn.functional.cross_entropy(forward(x).float(), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                forward(x)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # The first step includes torch.compile's tracing and code generation (and cuDNN autotuning).
    _, first_s = child.timed(lambda: (step(), sync()))
    for _ in range(spec["warmup"] - 1):
        step()
    sync()

    def timed_steps():
        for _ in range(spec["steps"]):
            step()
        sync()

    _, seconds = child.timed(timed_steps)
    step_s = seconds / spec["steps"]
    return child.result(
        "ok",
        images_per_s=child.images_per_second(batch, spec["steps"], seconds),
        step_ms=1000 * step_s,
        build_s=build_s,
        first_step_s=first_s,
        compile_s=max(first_s - step_s, 0.0) if compiled else None,
        peak_device_bytes=torch.cuda.max_memory_allocated() if device == "cuda" else None,
        params=params,
        versions=dict(torch=torch.__version__,
                      device_kind=torch.cuda.get_device_name() if device == "cuda" else "cpu"),
        **details,
    )


if __name__ == "__main__":
    child.main(measure)
