"""Measures one Keras model on the JAX backend: keras_preresnet, or the keras.applications topology.

Training is one jitted step written with Keras' stateless API: forward in bf16 (the
``mixed_bfloat16`` policy, float32 variables), softmax cross-entropy, SGD with momentum 0.9.
The step is lowered and compiled ahead of time, so tracing and XLA compile times are read apart
from the steady step time; ``memory_analysis`` of the compiled step gives XLA's own memory plan.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from bench import child  # noqa: E402
from bench import workloads as wl  # noqa: E402


def _keras_preresnet_model(keras, workload, image_size, fold_batchnorm):
    import keras_preresnet

    model = keras_preresnet.build_named(
        workload["architecture"],
        input_shape=(image_size, image_size, 3),
        classes=workload["classes"],
        classifier_activation=None,
        units_per_stage=wl.blocks(workload),
    )
    folded = False
    if workload["mode"] == "infer" and fold_batchnorm and hasattr(keras_preresnet, "fold_batchnorm"):
        model = keras_preresnet.fold_batchnorm(model)
        folded = True
    return model, dict(bn_folded=folded)


def _keras_apps_model(keras, workload, image_size):
    """Primitive-layer Keras model of keras.applications' ResNetV2 blocks in the workload's layout."""
    try:
        from keras.src.applications import resnet as apps
    except ImportError as error:
        raise child.Skip(f"keras.applications' private resnet module is not importable: {error}")
    shape = (image_size, image_size, 3)
    if workload["layout"] == "imagenet":
        # ResNet152V2's stack_fn with ResNet-200's block counts (stride at the end of a stage, as
        # keras.applications' V2 nets have it).
        blocks = wl.blocks(workload)

        def stack_fn(x):
            for stage, (filters, count) in enumerate(zip((64, 128, 256, 512), blocks)):
                stride = 1 if stage == 3 else 2
                x = apps.stack_residual_blocks_v2(x, filters, count, stride1=stride, name=f"conv{stage + 2}")
            return x

        model = apps.ResNet(
            stack_fn, True, True, weights=None, input_shape=shape, classes=workload["classes"],
            classifier_activation=None, name="resnet200v2_apps_topology",
        )
        return model, dict(topology="keras.applications ResNet152V2 stack_fn, blocks " + str(tuple(blocks)))
    # CIFAR layout: 3x3 stem, three stages of keras.applications' residual_block_v2 (widths 16/32/64,
    # stride on the first unit's 3x3, conv shortcut from the pre-activation), BN-ReLU head.
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1_conv")(inputs)
    for stage, (filters, stride, count) in enumerate(zip((16, 32, 64), (1, 2, 2), wl.blocks(workload))):
        for unit in range(count):
            first = unit == 0
            x = apps.residual_block_v2(
                x, filters, stride=stride if first else 1, conv_shortcut=first,
                name=f"conv{stage + 2}_block{unit + 1}",
            )
    x = keras.layers.BatchNormalization(epsilon=1e-5, name="post_bn")(x)
    x = keras.layers.Activation("relu", name="post_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(workload["classes"], dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, x, name=f"{workload['architecture']}_primitive")
    return model, dict(topology="keras.applications residual_block_v2 in the CIFAR layout")


def _train_step(model, optimizer):
    import jax
    import keras

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        logits = keras.ops.cast(logits, "float32")
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        return loss, non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(trainable, non_trainable, optimizer_vars, x, y):
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return trainable, non_trainable, optimizer_vars, loss

    return step


def measure(spec):
    import jax
    import keras

    if spec["device"] == "gpu" and jax.default_backend() != "gpu":
        raise child.Skip(f"JAX sees no GPU (default backend {jax.default_backend()!r})")
    workload, batch, size = spec["workload"], spec["batch_size"], spec["image_size"]
    keras.config.set_dtype_policy("mixed_bfloat16")

    def build():
        if spec["implementation"] == "keras_preresnet":
            return _keras_preresnet_model(keras, workload, size, spec["fold_batchnorm"])
        return _keras_apps_model(keras, workload, size)

    (model, details), build_s = child.timed(build)
    key_x, key_y = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (batch, size, size, 3), "float32")
    y = jax.random.randint(key_y, (batch,), 0, workload["classes"])
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    if workload["mode"] == "train":
        optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
        optimizer.build(model.trainable_variables)
        state = (trainable, non_trainable, [v.value for v in optimizer.variables])
        jitted = jax.jit(_train_step(model, optimizer), donate_argnums=(0, 1, 2))

        def run(compiled, state):
            out = compiled(*state, x, y)
            return out[:3], out[3]
    else:
        state = (trainable, non_trainable)
        jitted = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])

        def run(compiled, state):
            return state, compiled(*state, x)

    lowered, trace_s = child.timed(lambda: jitted.lower(*state, x, y) if workload["mode"] == "train"
                                   else jitted.lower(*state, x))
    compiled, compile_s = child.timed(lowered.compile)
    hlo_text = lowered.as_text()
    memory = compiled.memory_analysis()

    for _ in range(spec["warmup"]):
        state, out = run(compiled, state)
    jax.block_until_ready((state, out))

    def timed_steps():
        nonlocal state
        for _ in range(spec["steps"]):
            state, out = run(compiled, state)
        jax.block_until_ready((state, out))

    _, seconds = child.timed(timed_steps)
    stats = jax.local_devices()[0].memory_stats() or {}
    return child.result(
        "ok",
        images_per_s=child.images_per_second(batch, spec["steps"], seconds),
        step_ms=1000 * seconds / spec["steps"],
        build_s=build_s,
        trace_s=trace_s,
        compile_s=trace_s + compile_s,
        xla_compile_s=compile_s,
        peak_device_bytes=stats.get("peak_bytes_in_use"),
        xla_memory=None if memory is None else dict(
            argument_bytes=memory.argument_size_in_bytes,
            output_bytes=memory.output_size_in_bytes,
            temp_bytes=memory.temp_size_in_bytes,
            alias_bytes=memory.alias_size_in_bytes,
            generated_code_bytes=memory.generated_code_size_in_bytes,
        ),
        stablehlo_ops=hlo_text.count(" = stablehlo.") + hlo_text.count(" = \"stablehlo."),
        stablehlo_chars=len(hlo_text),
        keras_layers=len(model._flatten_layers(include_self=False, recursive=True)),
        params=model.count_params(),
        versions=dict(jax=jax.__version__, keras=keras.__version__, backend=jax.default_backend(),
                      device_kind=jax.devices()[0].device_kind),
        **details,
    )


if __name__ == "__main__":
    child.main(measure)
