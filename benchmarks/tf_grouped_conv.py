"""A depthwise 7x7 convolution in TensorFlow on CPU, written two ways: ``Conv2D(groups=C)`` (as
``keras.applications.ConvNeXt*`` writes it) against ``DepthwiseConv2D`` (as ``tf_impl`` renders it).

    python benchmarks/tf_grouped_conv.py [--size 56] [--channels 96] [--rounds 5] [--calls 50] [--json FILE]

One thread (``benchmarks/common.py`` ``thread_env``), batch 1, each layer in a ``tf.function``, the
same input; per layer the median over rounds of the mean latency of ``--calls`` calls, and the ratio
grouped / depthwise. This is why Keras' own ConvNeXt-T SavedModel is several times slower than ours
(docs/EXPORT.md); its LiteRT file is not, since the converter writes either form as DEPTHWISE_CONV_2D.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=56)
    p.add_argument("--channels", type=int, default=96)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if min(args.size, args.channels, args.rounds, args.calls) < 1:
        print("tf_grouped_conv: --size, --channels, --rounds and --calls must be >= 1", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import apply_threads

    apply_threads(1)
    import numpy as np

    from archspec.frameworks import import_tf

    tf, keras = import_tf()
    x = tf.constant(np.random.default_rng(0).standard_normal((1, args.size, args.size, args.channels)), tf.float32)
    layers = {"Conv2D(groups=C)": keras.layers.Conv2D(args.channels, 7, padding="same", groups=args.channels),
              "DepthwiseConv2D": keras.layers.DepthwiseConv2D(7, padding="same")}
    calls = {name: tf.function(layer) for name, layer in layers.items()}
    for f in calls.values():
        f(x)
    times = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, f in calls.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                f(x)
            times[name].append((time.perf_counter() - start) / args.calls * 1e3)
    ms = {name: round(statistics.median(v), 3) for name, v in times.items()}
    result = {"input": [1, args.size, args.size, args.channels], "kernel": 7, "threads": 1, "ms": ms,
              "grouped_over_depthwise": round(ms["Conv2D(groups=C)"] / ms["DepthwiseConv2D"], 3),
              "tensorflow": tf.__version__, "keras": keras.__version__}
    for name, v in ms.items():
        print(f"{name:<18} {v:9.3f} ms")
    print(f"grouped / depthwise: {result['grouped_over_depthwise']:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
