"""Numbers decided once for the whole package (BatchNorm as fb.resnet.torch, the datasets' normalisation; docs/training.md)."""

import keras

# Torch's BatchNorm: eps 1e-5, momentum 0.1 on the new statistic (= Keras momentum 0.9).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# ImageNet normalisation of the released ResNet-200 (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# CIFAR normalisation on the 0-255 scale (per-channel mean and std of the training sets).
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)
CIFAR100_MEAN = (129.3, 124.1, 112.4)
CIFAR100_STD = (68.2, 65.4, 70.4)


def classifier_initializer():
    """Torch's default ``nn.Linear`` weight, which fb.resnet.torch keeps: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    (Its bias it sets to zero, as Keras does.) Keras' glorot default would start the logits about 2.3
    times larger for a 64-feature, 10-class head, and the initial loss well above ln(10)."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")


def conv_initializer():
    """He initialisation as in fb.resnet.torch: normal(0, sqrt(2 / (k * k * out_channels)))."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")
