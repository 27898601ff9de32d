"""Reproduce the CPU dispatch deadlock of multi-process JAX, and show that ``DispatchWindow`` avoids it.

Two processes joined by ``jax.distributed`` (local coordinator, gloo), each with two simulated CPU
devices, run the evaluation loop of ``jax_impl/train/loop.py`` over and over: a jitted sum over a
batch split across the four devices (an all-reduce), its outputs added up. ``--mode``:

- ``async``: every program dispatched without waiting, outputs added on the devices (the loop's
  evaluation before 2026-12-02);
- ``fetch``: each batch's sums fetched to the host before the next batch (the evaluation now);
- ``window``: outputs added on the devices, at most two batches unfinished (``DispatchWindow``, the
  training loop now).

A trial is hung when neither process reports progress for ``--stall-s`` seconds (three times as long
for the first evaluation, which includes start-up); both are then killed
(SIGKILL: JAX's preemption handler takes SIGTERM). ``--hog`` keeps every core busy beside the trial,
as the other pytest worker does: the deadlock needs a launch thread delayed behind later launches.
Prints one line per trial and a summary; exits 1 if any trial hung.

    python scripts/dispatch_deadlock.py --mode async --trials 3 --hog
    python scripts/dispatch_deadlock.py --mode fetch --trials 3 --hog
"""

import argparse
import math
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from crossframe.launch import free_port  # noqa: E402


def child(process_id, port, mode, rounds, batches):
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from jax_impl.train.loop import DispatchWindow

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", 2, process_id)
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    whole, split = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    w = jax.make_array_from_process_local_data(whole, np.ones((64, 10), np.float32))
    step = jax.jit(lambda w, x: {"loss_sum": jnp.sum(x @ w), "correct": jnp.sum(x > 1), "count": jnp.sum(x)},
                   in_shardings=(whole, split), out_shardings=whole)
    for done in range(rounds):
        totals, window = None, DispatchWindow()
        for b in range(batches):
            x = jax.make_array_from_process_local_data(split, np.full((8, 64), b + process_id, np.float32))
            out = step(w, x)
            if mode == "fetch":
                got = jax.device_get(out)
                totals = got if totals is None else {k: totals[k] + got[k] for k in got}
                continue
            if mode == "window":
                window.add(out)
            totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
        jax.device_get(totals)
        print(f"progress {done + 1}", flush=True)


def trial(args):
    """``(hung, rounds done by the slower process, seconds)``."""
    port, start = free_port(), time.monotonic()
    procs = [subprocess.Popen([sys.executable, __file__, "--child", str(i), str(port), "--mode", args.mode,
                               "--rounds", str(args.rounds), "--batches", str(args.batches)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for i in range(2)]
    progress, last_change = [0, 0], [time.monotonic() + 2 * args.stall_s]  # start-up: 3x as long

    def read(i, stream):
        for line in stream:
            if line.startswith("progress "):
                progress[i], last_change[0] = int(line.split()[1]), time.monotonic()

    for i, p in enumerate(procs):
        threading.Thread(target=read, args=(i, p.stdout), daemon=True).start()
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() - last_change[0] > args.stall_s:
                return True, min(progress), time.monotonic() - start
            time.sleep(0.2)
        if any(p.returncode != 0 for p in procs):
            raise SystemExit(f"dispatch_deadlock: a process exited with status {[p.returncode for p in procs]}")
        return False, args.rounds, time.monotonic() - start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("async", "fetch", "window"), default="async")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=300, help="evaluations per trial (default 300)")
    parser.add_argument("--batches", type=int, default=24, help="batches per evaluation (default 24)")
    parser.add_argument("--stall-s", type=float, default=30.0, help="no progress this long: hung (default 30)")
    parser.add_argument("--hog", action="store_true", help="keep every core busy beside each trial")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.mode, args.rounds, args.batches)
    if min(args.trials, args.rounds, args.batches) < 1 or not 0 < args.stall_s < math.inf:
        parser.error("--trials, --rounds and --batches must be >= 1, --stall-s a finite number > 0")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)] \
        if args.hog else []
    try:
        hung = 0
        for t in range(args.trials):
            stuck, rounds, seconds = trial(args)
            hung += stuck
            print(f"{args.mode} trial {t + 1}: {'HUNG after' if stuck else 'finished'} {rounds} of {args.rounds} "
                  f"evaluations, {seconds:.0f} s", flush=True)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    print(f"{args.mode}: {hung} of {args.trials} trials hung ({args.batches} batches an evaluation, "
          f"{'every core busy beside them' if args.hog else 'idle cores'}, {os.cpu_count()} cores)")
    return 1 if hung else 0


if __name__ == "__main__":
    sys.exit(main())
