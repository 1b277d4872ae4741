"""The network a config trains: built by keras_preresnet, optionally from pretrained weights with a new head.

The trained model outputs logits (``classifier_activation=None``, float32 under mixed precision); its
weights are the same as those of the softmax model the library builds, so files stay interchangeable.
"""

import keras

import keras_preresnet
from keras_preresnet import defaults, runs

HEAD = "predictions"


def network_arguments(config, classes, *, depth=None, image_size=None):
    """``build_resnet`` arguments of ``config``'s network (``image_size`` for the input shape): what
    run.json records to rebuild it for inference (``keras_preresnet.runs``; drop-path is training only)."""
    depth = config.depth if depth is None else depth
    return runs.network_record(
        depth=depth, unit=config.unit, shortcut=config.shortcut, shortcut_options=config.shortcut_options,
        projection=config.projection, layout=config.layout, form=config.form, classes=classes,
        image_size=config.image_size if image_size is None else image_size,
    )


def build_network(config, classes, *, depth=None, image_size=None, init_weights=None, init_classes=None,
                  drop_path_rate=0.0, scan_units="auto", remat=False):
    """Builds ``config``'s model with ``classes`` outputs (``drop_path_rate``: stochastic depth).

    ``init_weights`` (anything ``weights=`` accepts) is loaded into a model with ``init_classes``
    outputs (the classes it was trained on); when that differs from ``classes`` the classifier is
    replaced by a new, freshly initialised one. ``scan_units`` and ``remat`` go to ``build_resnet``.
    """
    head_classes = init_classes if init_weights is not None and init_classes is not None else classes
    arguments = network_arguments(config, head_classes, depth=depth, image_size=image_size)
    size = arguments.pop("image_size")
    model = keras_preresnet.build_resnet(
        input_shape=(size, size, 3), classifier_activation=None, weights=init_weights,
        drop_path_rate=drop_path_rate, scan_units=scan_units, remat=remat, **arguments
    )
    if head_classes != classes:
        features = model.get_layer("avg_pool").output
        # Logits stay float32 under mixed precision (as the library's own classifier).
        logits = keras.layers.Dense(classes, kernel_initializer=defaults.classifier_initializer(), name=HEAD,
                                    dtype="float32")(features)
        model = keras_preresnet.looped_models.functional_model(model.inputs, logits, name=model.name)
    return model


def set_backbone_trainable(model, trainable):
    """Freezes (or unfreezes) everything but the classifier. A frozen BatchNorm runs in inference mode
    (Keras 3 semantics of ``trainable=False``): its moving statistics stay those of the pretrained net."""
    for layer in model.layers:
        if layer.name != HEAD:
            layer.trainable = trainable
