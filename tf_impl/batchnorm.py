"""Batch normalisation that follows ``ir.BatchNorm`` to the letter, including its running variance.

Keras' ``BatchNormalization`` feeds the biased batch variance to its moving variance; PyTorch feeds
the unbiased one (n/(n-1), n = N*H*W). The IR says which (``running_var``), so this layer does the
update itself. Weights keep Keras' names (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``).
Only ``keras.ops``: the layer runs on Keras' TensorFlow, JAX and PyTorch backends alike.
"""

from ._tf import keras, ops

_RUNNING_VAR = ("unbiased", "biased")


def _moments(x):
    """Mean and biased variance over N, H, W in two passes (mean of squared differences, as
    PyTorch; not E[x^2] - E[x]^2), op for op as ``tf.nn.moments``: the variance sees the mean
    through a stop-gradient (its exact gradient there is zero anyway)."""
    axes = tuple(range(len(x.shape) - 1))  # N, H, W; or N for pooled features
    mean = ops.mean(x, axis=axes)
    var = ops.mean(ops.square(x - ops.stop_gradient(mean)), axis=axes)
    return mean, var


class BatchNorm(keras.layers.Layer):
    """Batch norm over the last (channel) axis, built from an ``ir.BatchNorm`` and a channel count.

    Training (``training=True`` and the layer trainable, as Keras' own layer): normalise with the
    batch mean and biased batch variance, then ``moving = decay * moving + (1 - decay) * batch``
    where the batch variance is unbiased or biased as ``bn.running_var`` says. Otherwise normalise
    with the moving statistics. Moving statistics start at mean 0, variance 1.
    """

    def __init__(self, bn, channels, **kwargs):
        if bn.running_var not in _RUNNING_VAR:
            raise ValueError(f"BatchNorm.running_var {bn.running_var!r}, expected 'unbiased' or 'biased'")
        super().__init__(**kwargs)
        self.ir = bn
        self.channels = channels
        self.epsilon = bn.eps
        self.decay = bn.decay
        self.running_var_mode = bn.running_var

    def build(self, input_shape=None):
        c = (self.channels,)
        self.gamma = self.add_weight(shape=c, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=c, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=c, initializer="zeros", name="moving_mean", trainable=False)
        self.moving_variance = self.add_weight(shape=c, initializer="ones", name="moving_variance", trainable=False)
        self.built = True

    def call(self, x, training=None):
        dtype = keras.backend.standardize_dtype(x.dtype)
        if dtype in ("bfloat16", "float16"):  # statistics in float32, as PyTorch's kernels accumulate
            x = ops.cast(x, "float32")
        if training and self.trainable:
            mean, var = _moments(x)
            self._update_moving(x, mean, var)
        else:
            mean, var = (ops.cast(v, x.dtype) for v in (self.moving_mean, self.moving_variance))
        gamma, beta = ops.cast(self.gamma, x.dtype), ops.cast(self.beta, x.dtype)
        # x * (gamma / sqrt(var + eps)) + (beta - mean * gamma / sqrt(var + eps)), PyTorch's CPU order
        # (and tf.nn.batch_normalization's, op for op).
        inv = ops.rsqrt(var + self.epsilon) * gamma
        y = x * inv + (beta - mean * inv)
        return ops.cast(y, dtype)

    def _update_moving(self, x, mean, var):
        mean = ops.stop_gradient(mean)
        var = ops.stop_gradient(var)
        if self.running_var_mode == "unbiased":
            n = 1
            for size in ops.shape(x)[:-1]:  # ints, or scalar tensors for a dynamic batch in a TF graph
                n = n * size
            n = ops.cast(n, var.dtype)
            var = var * (n / (n - 1.0))
        d = self.decay
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
            old = ops.cast(moving, batch.dtype)
            moving.assign(ops.cast(d * old + (1.0 - d) * batch, moving.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape
