"""Speed and memory benchmarks of crossframe's renderers against the libraries they mirror.

Suites (each runnable as ``python -m benchmarks.<suite>``; ``crossframe bench`` runs them all):

    torch_vs_libs   torch_impl vs torchvision and timm (fp32, channels_last, bf16 autocast, torch.compile)
    tf_vs_keras     tf_impl vs keras.applications (eager, tf.function, jit_compile=True)
    jax_vs_torch    jax_impl (jax.jit) vs torch_impl on the same device
    jax_vs_flax     jax_impl vs hand-written Flax linen ResNet-50 / MobileNetV2 (flax_reference.py), fp32 and bf16
    padding_cost    'tf_same' padding against 'symmetric' in each framework, timm's dynamic padding beside it
    report          results JSON -> the tables and the plot of docs/BENCHMARKS.md

``convert_resnet152.py`` (checkpoint conversion speed and memory) is separate; see docs/CONVERT.md.
Timing, pairing and memory methods: :mod:`benchmarks.common`.
"""
