"""The benchmark's workloads and their targets, decided once here.

Each workload names a keras_preresnet architecture, whether it trains or predicts, its batch and
input size, and the target keras_preresnet must reach against the peers measured in the same run.
"""

# Implementations measured for every workload; `keras_preresnet` is the one the ratios are taken of.
SUBJECT = "keras_preresnet"
PEERS = ("torch_eager", "torch_compile", "keras_apps")
IMPLEMENTATIONS = (SUBJECT,) + PEERS

# What each peer is, for the result file and the README.
PEER_DESCRIPTIONS = {
    "torch_eager": "PyTorch eager, bf16 autocast, channels_last (timm ResNetV2 on ImageNet; "
                   "the script's pre-act bottleneck ResNet on CIFAR)",
    "torch_compile": "the same PyTorch model under torch.compile (default mode)",
    "keras_apps": "Keras-JAX model of primitive layers: keras.applications ResNet152V2 topology with "
                  "ResNet-200 blocks (3, 24, 36, 3) on ImageNet; keras.applications' residual_block_v2 "
                  "stacked in the CIFAR layout (16/32/64 widths, 3x3 stem) on CIFAR",
}

WORKLOADS = {
    "rn200_train": dict(
        architecture="preact_resnet200", layout="imagenet", imagenet_blocks=(3, 24, 36, 3),
        mode="train", batch_size=256, image_size=224, classes=1000,
        target=dict(versus="best_peer", min_ratio=1.25),
        issue_peers="PyTorch eager 1,392 · torch.compile 1,912 · keras.applications-topology "
                    "ResNet-200 on Keras-JAX 1,659",
    ),
    "rn200_infer": dict(
        architecture="preact_resnet200", layout="imagenet", imagenet_blocks=(3, 24, 36, 3),
        mode="infer", batch_size=256, image_size=224, classes=1000,
        target=dict(versus="best_peer", min_ratio=1.4),
        issue_peers="torch.compile 6,602 · Keras-JAX 6,229",
    ),
    "rn164_train": dict(
        architecture="preact_resnet164", layout="cifar", cifar_units=18,
        mode="train", batch_size=128, image_size=32, classes=10,
        target=dict(versus="torch_eager", min_ratio=2.5),
        issue_peers="PyTorch eager 1,544 · Keras-JAX, primitive-layer model 1,821",
    ),
    "rn1001_train": dict(
        architecture="preact_resnet1001", layout="cifar", cifar_units=111,
        mode="train", batch_size=128, image_size=32, classes=10,
        target=dict(versus="torch_eager", min_ratio=1.5, max_compile_s=60.0, memory_at_most="torch_eager"),
        issue_peers="PyTorch eager 264 (9.3 GB); Keras-JAX primitive-layer model: recursion error, "
                    "then > 5 min to compile",
    ),
}

# --quick: a CPU smoke run that exercises every code path at a size two shared cores can afford. It also
# cuts every net to 2 units per stage (keras.applications' stacks need at least 2): the code paths are
# those of the full depths, which differ only in these numbers.
QUICK = dict(batch_size=2, image_size=32, steps=1, warmup=1, cifar_units=2, imagenet_blocks=(2, 2, 2, 2))


def blocks(workload):
    """Units per stage: ``imagenet_blocks`` on ImageNet, ``cifar_units`` in each of the 3 CIFAR stages."""
    if workload["layout"] == "imagenet":
        return tuple(workload["imagenet_blocks"])
    return (workload["cifar_units"],) * 3


def describe_target(target):
    """The target as the issue words it, e.g. '>= 1.25 x best peer'."""
    versus = "the best peer" if target["versus"] == "best_peer" else target["versus"]
    words = [f">= {target['min_ratio']} x {versus}"]
    if "max_compile_s" in target:
        words.append(f"compile <= {target['max_compile_s']:.0f} s")
    if "memory_at_most" in target:
        words.append(f"peak memory <= {target['memory_at_most']}'s")
    return ", ".join(words)
