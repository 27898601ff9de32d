"""Batch normalisation that follows ``ir.BatchNorm`` to the letter, including its running variance.

Keras' ``BatchNormalization`` feeds the biased batch variance to its moving variance; PyTorch feeds
the unbiased one (n/(n-1), n = N*H*W). The IR says which (``running_var``), so this layer does the
update itself. Weights keep Keras' names (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``).
"""

from ._tf import keras, tf

_RUNNING_VAR = ("unbiased", "biased")


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
        dtype = x.dtype
        if dtype in (tf.bfloat16, tf.float16):  # statistics in float32, as PyTorch's kernels accumulate
            x = tf.cast(x, tf.float32)
        if training and self.trainable:
            # Two-pass moments (mean of squared differences), as PyTorch; not E[x^2] - E[x]^2.
            mean, var = tf.nn.moments(x, axes=[0, 1, 2])
            self._update_moving(x, mean, var)
        else:
            mean, var = (tf.cast(v, x.dtype) for v in (self.moving_mean, self.moving_variance))
        gamma, beta = tf.cast(self.gamma, x.dtype), tf.cast(self.beta, x.dtype)
        # x * (gamma / sqrt(var + eps)) + (beta - mean * gamma / sqrt(var + eps)), PyTorch's CPU order.
        y = tf.nn.batch_normalization(x, mean, var, beta, gamma, self.epsilon)
        return tf.cast(y, dtype)

    def _update_moving(self, x, mean, var):
        mean = tf.stop_gradient(mean)
        var = tf.stop_gradient(var)
        if self.running_var_mode == "unbiased":
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), var.dtype)
            var = var * (n / (n - 1.0))
        d = self.decay
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
            old = tf.cast(moving, batch.dtype)
            moving.assign(tf.cast(d * old + (1.0 - d) * batch, moving.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape
