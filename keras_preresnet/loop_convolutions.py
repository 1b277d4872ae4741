"""Convolutions in a loop body on XLA:CPU: a looped stage's convolutions with their gradients written as
canonical convolutions, which XLA:CPU runs through its fast kernels (``stages.ScannedStage`` uses them)."""

import keras

# XLA:CPU runs a convolution through its fast (Eigen) kernels only in the canonical layout (batch,
# rows, cols, features) x (rows, cols, in, out). Outside a loop it rewrites the gradient convolutions
# into that layout; inside a ``while`` body it leaves them as they come (JAX's weight gradient is
# ``f01b_i01o->01bf``) and emits a naive loop nest for them. Measured on 2 CPU cores, 18 units of a
# 3x3, 64-channel convolution, batch 8, 8x8, gradient of the looped stack against the unrolled one:
# JAX 236 vs 16 ms; TensorFlow under XLA (``jit_compile=True``) 222 ms against 21 ms without XLA. A
# looped stage's convolutions therefore carry their own gradient wherever XLA compiles for the CPU (JAX
# on its CPU platform; TensorFlow inside an XLA-compiled function with no GPU visible), written as
# canonical convolutions between explicit transposes: 14 ms (JAX) and 13 ms (TensorFlow with XLA) for
# the same stack. TensorFlow without XLA keeps its own gradient kernels (21 ms; these would take 39).


def _same_padding(size):
    """Keras' ``'same'`` padding of a stride-1 window: the odd pixel goes after."""
    low = (size - 1) // 2
    return low, size - 1 - low


def _paddings(kernel_shape):
    """The ``[(top, bottom), (left, right)]`` paddings of a stride-1 ``'same'`` convolution (also those
    of its weight gradient) and of its input gradient."""
    (kh, kw), rows, cols = kernel_shape[:2], _same_padding(kernel_shape[0]), _same_padding(kernel_shape[1])
    return [rows, cols], [(kh - 1 - rows[0], kh - 1 - rows[1]), (kw - 1 - cols[0], kw - 1 - cols[1])]


def _canonical_gradients(conv, x, kernel, dy):
    """``(dx, dkernel)`` of a stride-1 ``'same'`` NHWC convolution in canonical convolutions only;
    ``conv(x, kernel, padding)`` is the backend's NHWC/HWIO convolution with explicit padding."""
    ops = keras.ops
    if tuple(kernel.shape[:2]) == (1, 1):  # matrix products
        return ops.einsum("bhwo,io->bhwi", dy, kernel[0, 0]), ops.einsum("bhwi,bhwo->io", x, dy)[None, None]
    padding, input_padding = _paddings(kernel.shape)
    # dx: the flipped kernel with in and out swapped, slid over dy.
    dx = conv(dy, ops.transpose(ops.flip(kernel, (0, 1)), (0, 1, 3, 2)), input_padding)
    # dkernel: x with its channels as the batch and its batch as the features, dy as the kernel.
    dkernel = conv(ops.transpose(x, (3, 1, 2, 0)), ops.transpose(dy, (1, 2, 0, 3)), padding)
    return dx, ops.transpose(dkernel, (1, 2, 0, 3))


def _jax_canonical_conv():
    import jax
    from jax import lax

    def conv(x, kernel, padding):
        return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @jax.custom_vjp
    def canonical(x, kernel):
        return conv(x, kernel, _paddings(kernel.shape)[0])

    def forward(x, kernel):
        return canonical(x, kernel), (x, kernel)

    def backward(residuals, dy):
        return _canonical_gradients(conv, *residuals, dy)

    canonical.defvjp(forward, backward)
    return canonical


def _tensorflow_canonical_conv():
    import tensorflow as tf

    def conv(x, kernel, padding):
        x = tf.pad(x, [[0, 0], list(padding[0]), list(padding[1]), [0, 0]])
        return tf.nn.conv2d(x, kernel, 1, "VALID")

    @tf.custom_gradient
    def canonical(x, kernel):
        return conv(x, kernel, _paddings(kernel.shape)[0]), lambda dy: _canonical_gradients(conv, x, kernel, dy)

    return canonical


def _xla_cpu_compiles_this():
    """Whether the function being traced is compiled by XLA for the CPU (decided at trace time)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() == "cpu"
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util  # TensorFlow's own test of an XLA context

        in_xla = control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
        return bool(in_xla) and not tf.config.list_logical_devices("GPU")
    return False


def _loop_convolution(layer, conv):
    """``layer.convolution_op`` for a looped stage's template unit: ``conv`` where XLA compiles for the
    CPU, the layer's own elsewhere."""
    default = layer.convolution_op

    def convolution_op(inputs, kernel):
        if not _xla_cpu_compiles_this():
            return default(inputs, kernel)
        # A Keras variable (its value read under the layer's autocast scope) becomes an array here.
        return conv(keras.ops.convert_to_tensor(inputs), keras.ops.convert_to_tensor(kernel))

    return convolution_op


_CANONICAL_CONV = {"jax": _jax_canonical_conv, "tensorflow": _tensorflow_canonical_conv}


def use_loop_convolutions(template):
    """Gives the stride-1 ``'same'`` convolutions of ``template`` gradients that XLA:CPU runs fast in a
    loop body (see above); other convolutions keep the backend's."""
    if keras.backend.backend() not in _CANONICAL_CONV:
        return
    conv = _CANONICAL_CONV[keras.backend.backend()]()
    for layer in template._flatten_layers(include_self=False, recursive=True):
        if (
            isinstance(layer, keras.layers.Conv2D)
            and tuple(layer.strides) == (1, 1)
            and tuple(layer.dilation_rate) == (1, 1)
            and layer.padding == "same"
            and layer.data_format == "channels_last"
            and layer.groups == 1
        ):
            layer.convolution_op = _loop_convolution(layer, conv)

