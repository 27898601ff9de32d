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
        if training and self.trainable:
            # Two-pass moments (mean of squared differences), as PyTorch; not E[x^2] - E[x]^2.
            mean, var = tf.nn.moments(x, axes=[0, 1, 2])
            self._update_moving(x, mean, var)
        else:
            mean, var = self.moving_mean, self.moving_variance
        # x * (gamma / sqrt(var + eps)) + (beta - mean * gamma / sqrt(var + eps)), PyTorch's CPU order.
        return tf.nn.batch_normalization(x, mean, var, self.beta, self.gamma, self.epsilon)

    def _update_moving(self, x, mean, var):
        mean = tf.stop_gradient(mean)
        var = tf.stop_gradient(var)
        if self.running_var_mode == "unbiased":
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), var.dtype)
            var = var * (n / (n - 1.0))
        d = self.decay
        self.moving_mean.assign(d * self.moving_mean + (1.0 - d) * tf.cast(mean, self.moving_mean.dtype))
        self.moving_variance.assign(d * self.moving_variance + (1.0 - d) * tf.cast(var, self.moving_variance.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape
