"""A real one-node SLURM cluster for the tests: Debian's slurm-wlm and munge (`make slurm-tools`), started
here on free ports, with `select/cons_tres` and two stand-in GPUs (device nodes in the test's folder that
gres.conf names), its state in the test's folder. Tests point SLURM's commands at it with SLURM_CONF."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import free_port, require

GPUS = 2


def _slurm_conf(folder: Path, node: str, munge_socket: Path) -> str:
    return f"""ClusterName=fracatlas-tests
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SchedulerType=sched/backfill
ReturnToService=2
KillWait=20
OverTimeLimit=0
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} Gres=gpu:{GPUS} RealMemory=1000 State=UNKNOWN
PartitionName=gpu Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@contextmanager
def slurm_cluster(folder: Path) -> Iterator[dict[str, str]]:
    """munged, slurmctld and slurmd; yields the environment SLURM's commands need (SLURM_CONF)."""
    daemons = [shutil.which(name) for name in ("munged", "slurmctld", "slurmd", "sbatch")]
    require(all(daemons), "SLURM is not installed (make slurm-tools: Debian's slurm-wlm and munge)")
    require(os.geteuid() == 0, "a one-node SLURM here runs its slurmd as root")
    for sub in ("state", "spool", "munge", "dev"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    devices = []
    for index in range(GPUS):  # stand-in GPUs: SLURM counts character devices, here copies of /dev/null
        device = folder / "dev" / f"gpu{index}"
        try:
            os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
        except PermissionError:
            require(False, "cannot make the stand-in GPU device nodes (mknod)")
        devices.append(device)
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (folder / "munge").chmod(0o700)
    munge_socket = folder / "munge" / "munge.sock"
    node = socket.gethostname()
    (folder / "slurm.conf").write_text(_slurm_conf(folder, node, munge_socket))
    (folder / "gres.conf").write_text(f"AutoDetect=off\nNodeName={node} Name=gpu File={folder}/dev/gpu[0-{GPUS - 1}]\n")
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    munged = [f"--key-file={key}", f"--socket={munge_socket}", f"--pid-file={folder}/munge/munged.pid",
              f"--log-file={folder}/munge/munged.log", f"--seed-file={folder}/munge/seed", "--force"]  # fmt: skip
    subprocess.run(["munged", *munged], check=True, timeout=30)
    try:
        subprocess.run(["slurmctld"], env=env, check=True, timeout=30)
        subprocess.run(["slurmd"], env=env, check=True, timeout=30)
        deadline = time.monotonic() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, (folder / "slurmctld.log").read_text()[-2000:]
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True, timeout=30)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            if (folder / pid_file).exists():
                _stop((folder / pid_file).read_text().strip())


def _stop(pid: str) -> None:
    try:
        os.kill(int(pid), 15)
    except (ValueError, ProcessLookupError):
        return
    for _ in range(100):
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
