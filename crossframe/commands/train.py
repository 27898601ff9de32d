"""crossframe train: train a spec with JAX/Flax (optax, jax.sharding, Orbax), optionally export it.

Everything a user can get wrong is checked before training starts: the config values, the export
paths (an existing file needs ``--overwrite``), the workdir (a non-empty directory that holds no
training run is refused) and the ``--init-from`` checkpoint (read, strictly, before the workdir is
touched). SIGINT / SIGTERM save a checkpoint at the step in flight and exit 130 / 143.
"""

import json
import os
import sys

NAME = "train"
INIT_FORMATS = ("torch", "keras", "flax", "canonical", "torchvision", "timm", "keras-applications")
HELP = ("train a network with JAX/Flax on the digits, synthetic data, an image folder or record files; resume; "
        "export to PyTorch/Keras")


def add_arguments(p):
    from ..frameworks import require

    require(["jax"])  # jax_impl (even its config's defaults) imports JAX: say so, not a traceback
    from jax_impl.train.config import TrainConfig

    d = TrainConfig()
    p.add_argument("arch", help="variant name (see `crossframe list`)")
    p.add_argument("--framework", default="jax", choices=("jax",),
                   help="training framework (jax; export to the others with --export-torch/--export-keras)")
    p.add_argument("--workdir", default=None,
                   help="checkpoints/, metrics.jsonl and metrics.png go here (default runs/ARCH); "
                        "a workdir holding checkpoints is resumed; a non-empty directory holding no run is refused")
    p.add_argument("--checkpoint-dir", default=None,
                   help="where Orbax checkpoints go (default WORKDIR/checkpoints); multi-host runs need "
                        "storage every host reads, e.g. gs://bucket/run")
    p.add_argument("--data", default=d.data, metavar="SRC",
                   help="digits, synthetic, imagefolder:PATH (class sub-folders of PNG/JPEG, or PATH/train and "
                        "PATH/val of them), tfrecord:GLOB or arrayrecord:GLOB (tf.train.Example records of encoded "
                        "images: `crossframe data pack`'s OUT directory, train-* and val-* shards, or a glob of "
                        "shards split by the seed); --num-classes defaults to the source's class count "
                        "(classes.json beside the shards, else 1 + the largest label)")
    p.add_argument("--data-size", type=int, default=d.data_size, help="examples of the synthetic source")
    p.add_argument("--input-size", type=int, default=None, help="resolve the spec at this input size")
    p.add_argument("--width", type=float, default=None, help="width multiplier override")
    p.add_argument("--num-classes", type=int, default=None,
                   help="(digits implies 10, an image folder or record files their class count)")
    p.add_argument("--deterministic", action="store_true", help="zero every dropout and drop-path rate")
    p.add_argument("--init", default=d.init, choices=("network", "he"),
                   help="initial weights: the renderer's (network) or fan-in He (he; for nets without BN); with "
                        "--init-from, the draw of a fresh classifier")
    p.add_argument("--init-from", default=None, metavar="FILE",
                   help="start from this checkpoint: any file `crossframe convert` reads (torchvision, timm, Keras "
                        "Applications, torch, keras, flax, canonical, a training checkpoint directory). Its "
                        "classifier size is read from it: without --num-classes it is kept, another --num-classes "
                        "puts a fresh classifier on the loaded backbone (said in one line). Read only when the run "
                        "starts at step 0: on a workdir holding checkpoints the run resumes from its own checkpoint "
                        "and FILE is not read (a note says so; --no-resume starts over from FILE)")
    p.add_argument("--init-format", default=None, metavar="FMT", choices=INIT_FORMATS,
                   help="format of --init-from (crossframe convert's --from: " + ", ".join(INIT_FORMATS)
                        + "); default: inferred from the file")
    p.add_argument("--freeze", default=None, choices=("backbone",),
                   help="backbone: train the classifier alone. Every other layer with weights is frozen: its "
                        "parameters get no update, no weight decay and no optimizer state, and it runs in eval "
                        "mode (BN normalises with its running statistics, which stay fixed; no drop path); the "
                        "dropout before the classifier stays active")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep an exponential moving average of the weights (params and BN statistics), "
                        "ema = DECAY*ema + (1-DECAY)*weights after every step, starting from the initial weights; "
                        "checkpointed, evaluated beside the raw weights (ema_loss, ema_accuracy in metrics.jsonl) "
                        "and exported beside them: --export-torch NAME.pt also writes NAME.ema.pt, --export-keras "
                        "NAME.weights.h5 also NAME.ema.weights.h5. DECAY in (0, 1), e.g. 0.999")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps", type=int, default=None, help="total optimizer steps (overrides --epochs)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop (and checkpoint) at this step; rerun to resume. The schedule still spans the run")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch, all devices and hosts")
    p.add_argument("--accum-steps", type=int, default=d.accum_steps, help="gradient accumulation micro-batches")
    p.add_argument("--optimizer", default=d.optimizer, choices=("sgd", "adamw"))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--decay", default=d.decay, choices=("kernels", "all"), help="which parameters decay")
    p.add_argument("--schedule", default=d.schedule, choices=("cosine", "constant"))
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--grad-clip", type=float, default=None, help="clip gradients to this global norm")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--dtype", default=d.dtype, choices=("float32", "bfloat16"),
                   help="compute dtype; parameters and optimizer state stay float32")
    p.add_argument("--precision", default=d.precision, choices=("default", "highest"),
                   help="jax.default_matmul_precision (highest: no bf16/TF32 passes on TPU/GPU)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: epoch)")
    p.add_argument("--save-every", type=int, default=None, help="steps between checkpoints (default: epoch)")
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--devices", type=int, default=None, help="use the first N devices (default: all)")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() first (TPU pods, SLURM: no other flag)")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="launch N local processes joined by jax.distributed (a coordinator on a free local port, "
                        "CPU collectives): the multi-host code path on one machine")
    p.add_argument("--process-devices", type=int, default=1, metavar="D",
                   help="with --processes on the CPU: devices each process simulates (default 1)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over even if the workdir has checkpoints: the old checkpoints and metrics are "
                        "moved aside (renamed checkpoints.old-<time>, metrics.old-<time>.jsonl) and the new "
                        "names printed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--export-torch", default=None, metavar="PATH",
                   help="write the trained weights as a .pt state_dict (with --ema, the average to NAME.ema.pt)")
    p.add_argument("--export-keras", default=None, metavar="PATH",
                   help="write the trained weights as .weights.h5 (with --ema, the average to NAME.ema.weights.h5)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing --export-torch/--export-keras files (and their .ema. siblings; checked "
                        "before training)")


def config_from_args(args):
    from jax_impl.train.config import TrainConfig
    from jax_impl.train.data import FILE_SOURCES, check_source, source_classes

    if args.num_classes is None and check_source(args.data).startswith(FILE_SOURCES):
        args.num_classes = source_classes(args.data)  # recorded in the config: export needs no folder
    overrides = {k: v for k, v in (("input_size", args.input_size), ("width", args.width),
                                   ("num_classes", args.num_classes)) if v is not None}
    return TrainConfig(
        arch=args.arch, overrides=overrides, deterministic=args.deterministic, data=args.data,
        data_size=args.data_size, seed=args.seed, init=args.init, epochs=args.epochs, steps=args.steps,
        batch_size=args.batch_size, accum_steps=args.accum_steps, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay, decay=args.decay,
        schedule=args.schedule, warmup_steps=args.warmup_steps, grad_clip=args.grad_clip,
        label_smoothing=args.label_smoothing, dtype=args.dtype, precision=args.precision,
        eval_every=args.eval_every, save_every=args.save_every, log_every=args.log_every, freeze=args.freeze,
        ema=args.ema)


def run(args):
    from archspec.errors import ConfigError

    from ..export import check_outputs

    config = config_from_args(args)  # ConfigError on a bad value, before anything else
    for flag, value in (("--max-steps", args.max_steps), ("--devices", args.devices)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: expected an integer >= 1")
    if args.init_format and not args.init_from:
        raise ConfigError("--init-format: give --init-from FILE too")
    workdir = args.workdir or os.path.join("runs", args.arch)
    exporting = args.export_torch or args.export_keras
    check_outputs(args.export_torch, args.export_keras, overwrite=args.overwrite,
                  ema=config.ema is not None)  # not after an hour of training
    from jax_impl.train import workdir as workdir_lib

    workdir_lib.check(workdir, args.checkpoint_dir)
    if args.processes is not None:
        if args.distributed:
            raise ConfigError("--processes launches the processes of a --distributed run itself: give one of them")
        from ..launch import launch

        return launch(args.cli_argv, args.processes, args.process_devices)
    if exporting:
        from ..frameworks import import_torch

        import_torch()  # torch (and triton) before TensorFlow, which the Keras export imports
    if args.distributed:
        from jax_impl.train import mesh

        mesh.initialize()
    import jax

    from jax_impl.train import train

    init_variables = init_source = None
    if args.init_from:  # after jax.distributed.initialize(): Orbax asks JAX which process it is
        from .. import init_from

        checkpoint_dir = args.checkpoint_dir or os.path.join(workdir, "checkpoints")
        resumed = init_from.resumed_step(checkpoint_dir, resume=not args.no_resume)
        if resumed is None:
            config, init_variables, init_source, line = init_from.prepare(config, args.init_from, args.init_format)
        else:
            config = init_from.keep_saved_classes(config, checkpoint_dir)
            line = (f"--init-from {args.init_from}: not read: resuming the run in {checkpoint_dir} at step {resumed} "
                    "(its own checkpoint wins; --no-resume starts over from the file)")
        if jax.process_index() == 0:
            print(line, file=sys.stderr)

    devices = jax.devices()[:args.devices] if args.devices else None
    result = train(config, workdir, checkpoint_dir=args.checkpoint_dir, max_steps=args.max_steps,
                   resume=not args.no_resume, devices=devices, progress=not args.no_progress,
                   init_variables=init_variables, init_source=init_source)
    summary = {"arch": result.spec.name, "step": int(jax.device_get(result.state.step)),
               "resumed_from": result.start_step, "stopped_early": result.stopped_early,
               "test": result.final_eval, **{k: v for k, v in result.paths.items() if v}}
    from jax_impl.train.metrics import throughput

    speed = throughput(result.records, after_step=result.start_step)
    if speed:
        summary["throughput"] = speed
    if init_source:
        summary["init_from"] = init_source
    if exporting and jax.process_index() == 0:
        if result.stopped_early:
            print("note: exporting the weights of an unfinished run", file=sys.stderr)
        from ..export import export

        summary["exported"] = export(result.paths["checkpoints"], args.export_torch, args.export_keras,
                                     overwrite=args.overwrite, ema=config.ema is not None)
    if jax.process_index() == 0:
        print(json.dumps(summary, indent=1))
    return 0
