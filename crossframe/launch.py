"""``crossframe train ... --processes N``: a multi-process JAX run on this machine.

Starts N copies of the same command with ``--distributed``, each told its place through the
variables :func:`jax_impl.train.mesh.initialize` reads (``JAX_COORDINATOR_ADDRESS`` on a free local
port, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``); on the CPU each process simulates
``--process-devices`` devices (``--xla_force_host_platform_device_count``) and JAX's CPU collectives
(gloo) carry the all-reduces between them. It is the same code path a TPU pod slice or a SLURM job
takes with ``--distributed`` alone, where the cluster supplies those variables.

Process 0 prints to this terminal; the others' output is kept and shown only if they fail. Ctrl-C or
SIGTERM is passed on to every process (each saves a checkpoint at its step and exits 130/143); when one
process fails, the others are stopped, since they would wait for it at the next collective. A process
still running ``KILL_AFTER_S`` after its SIGTERM is killed: one stuck in a collective never reaches the
Python code that acts on the signal (and JAX's own preemption handler takes SIGTERM too).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from archspec.errors import ConfigError

GRACE_S = 30  # after one process fails, how long the others get before they are stopped
KILL_AFTER_S = 120  # after SIGTERM, how long a process gets to save its checkpoint before SIGKILL


def without_flags(argv, flags):
    """``argv`` less each of ``flags`` and its value (``--flag V`` or ``--flag=V``)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        if token in flags:
            skip = True
            continue
        if any(token.startswith(f + "=") for f in flags):
            continue
        out.append(token)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(process_id, processes, port, process_devices):
    env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(processes),
               JAX_PROCESS_ID=str(process_id))
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={process_devices}"])
    return env


def launch(argv, processes, process_devices=1):
    """Run ``crossframe`` with ``argv`` (less ``--processes``/``--process-devices``, plus ``--distributed``)
    in ``processes`` local processes; returns the exit status (process 0's, or the first failure's)."""
    if processes < 2:
        raise ConfigError(f"--processes {processes}: expected an integer >= 2 (one process needs no launcher)")
    if process_devices < 1:
        raise ConfigError(f"--process-devices {process_devices}: expected an integer >= 1")
    argv = without_flags(argv, ("--processes", "--process-devices"))
    if "--distributed" not in argv:
        argv.append("--distributed")
    port = free_port()
    children, logs = [], []
    try:
        for i in range(processes):
            log = None if i == 0 else tempfile.TemporaryFile(mode="w+")
            logs.append(log)
            children.append(subprocess.Popen([sys.executable, "-m", "crossframe", *argv],
                                             env=child_env(i, processes, port, process_devices),
                                             stdout=log, stderr=log))
        return _wait(children, logs)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; SIGTERM only us: pass it on
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        _wait_or_kill(children, time.monotonic() + KILL_AFTER_S)
        raise
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for log in logs:
            if log is not None:
                log.close()


def _wait_or_kill(children, deadline):
    """Wait for every child; kill those still running at ``deadline`` (``time.monotonic()``)."""
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait(children, logs):
    failed_at = terminated_at = None
    while any(child.poll() is None for child in children):
        codes = [child.poll() for child in children]
        now = time.monotonic()
        if failed_at is None and any(code not in (None, 0) for code in codes):
            failed_at = now
        if failed_at is not None and terminated_at is None and now - failed_at > GRACE_S:
            terminated_at = now
            for child in children:
                if child.poll() is None:
                    child.terminate()
        if terminated_at is not None and now - terminated_at > KILL_AFTER_S:
            _wait_or_kill(children, now)
        time.sleep(0.2)
    codes = [child.returncode for child in children]
    for i, (code, log) in enumerate(zip(codes, logs)):
        if code != 0 and log is not None:
            log.seek(0)
            tail = log.read()[-4000:]
            print(f"crossframe: process {i} of {len(children)} exited with status {code}:\n{tail}", file=sys.stderr)
    return next((code for code in codes if code != 0), 0)
