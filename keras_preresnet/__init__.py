"""keras_preresnet: the ResNets of He et al. (2015, 2016) and their pre-activation variants in Keras 3."""

from keras_preresnet import console as _console

# The package's command lines load TensorFlow before anything else does, without its start-up lines.
if _console.running_command_line():
    _console.load_tensorflow_quietly()

from keras_preresnet import features
from keras_preresnet.analysis.flops import count_flops
from keras_preresnet.analysis.layer_responses import layer_responses
from keras_preresnet.inference import fold_batchnorm
from keras_preresnet.layers import (
    BNAfterAdditionUnit,
    ConstantScalingShortcut,
    Conv1x1Shortcut,
    DropoutShortcut,
    DropPath,
    ExclusiveGatingShortcut,
    FullPreActivationUnit,
    IdentityShortcut,
    OriginalUnit,
    PlainUnit,
    ReLUBeforeAdditionUnit,
    ReLUOnlyPreActivationUnit,
    ResidualUnit,
    ShortcutOnlyGatingShortcut,
    TorchConv2D,
)
from keras_preresnet.looped_models import LoopedModel, unroll
from keras_preresnet.stages import ScannedStage
from keras_preresnet.preprocessing import decode_predictions, imagenet_classes, preprocess_input
from keras_preresnet.models import (
    ARCHITECTURES,
    PlainNet18,
    PlainNet20,
    PlainNet32,
    PlainNet34,
    PlainNet44,
    PlainNet56,
    PlainNet110,
    PreActResNet18,
    PreActResNet34,
    PreActResNet50,
    PreActResNet101,
    PreActResNet110,
    PreActResNet152,
    PreActResNet164,
    PreActResNet200,
    PreActResNet1001,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet44,
    ResNet50,
    ResNet56,
    ResNet101,
    ResNet110,
    ResNet152,
    ResNet164,
    ResNet200,
    ResNet1001,
    ResNet1202,
    build_named,
    build_resnet,
    list_models,
)
from keras_preresnet.version import __version__
