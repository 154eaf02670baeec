"""A throwaway single-node SLURM cluster for tests, with accounting, all its state in one folder.

Debian's packages (installed here with apt when missing, as root): munge for authentication,
MariaDB + slurmdbd for accounting (so ``sacct`` answers and ``sacctmgr`` knows the test account,
as on a real cluster: the executor plugin validates the account with them), slurmctld and one
slurmd. Every daemon runs in the foreground as a child of the test on its own free port and
socket, so it neither meets nor disturbs a SLURM or database already on the machine, and
``stop()`` ends exactly these processes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "slurmdbd", "munge", "mariadb-server"]
DAEMONS = ["munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacctmgr"]
ACCOUNT, PARTITION, CLUSTER = "crosstune", "debug", "crosstune-test"
# Inside a job, snakemake-executor-plugin-slurm-jobstep (0.6.1) starts each rule with an srun
# whose environment it strips of every SLURM_* variable, SLURM_CONF included: that srun reads
# only the default path, as on a real cluster. The cluster's config goes there while it runs.
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")


def missing_binaries() -> list[str]:
    return [b for b in DAEMONS if not shutil.which(b, path=os.environ["PATH"] + ":/usr/sbin:/sbin")]


def install() -> None:
    """apt-get install the packages (root only); raises with apt's output when that fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        run = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if run.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, what: str, logs: list[Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s\n{tails}")


class SlurmCluster:
    """``with SlurmCluster(root) as c:`` runs commands against it with ``c.env`` (SLURM_CONF)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.procs: list[subprocess.Popen] = []
        self.installed_conf = False
        self.env = {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")}
        self.env["PATH"] = f"{self.env['PATH']}:/usr/sbin:/sbin"

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        r = self.root
        for d in ("munge", "db", "state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        ports = {k: free_port() for k in ("db", "dbd", "ctld", "slurmd")}
        self._munge(r)
        self._mariadb(r, ports["db"])
        self._write_confs(r, ports)
        if DEFAULT_CONF.exists() and not DEFAULT_CONF.read_text().startswith(f"ClusterName={CLUSTER}\n"):
            raise RuntimeError(f"{DEFAULT_CONF} exists: this machine has a SLURM of its own; not touching it")
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(r / "slurm.conf", DEFAULT_CONF)
        self.installed_conf = True
        self._daemon(["slurmdbd", "-D"], "slurmdbd")
        wait_until(lambda: self.ok(["sacctmgr", "-n", "list", "cluster"]), "slurmdbd", [r / "log/slurmdbd.log"])
        # the cluster, an account and this user in it: what sacctmgr/sshare answer to the plugin
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        for args in (["add", "cluster", CLUSTER], ["add", "account", ACCOUNT, f"cluster={CLUSTER}"],
                     ["add", "user", user, f"account={ACCOUNT}", f"cluster={CLUSTER}"]):  # fmt: skip
            self.check(["sacctmgr", "-i", *args])
        self._daemon(["slurmctld", "-D", "-i"], "slurmctld")
        self._daemon(["slurmd", "-D", "-N", "localhost"], "slurmd")
        wait_until(lambda: "idle" in self.check(["sinfo", "-h", "-o", "%T"]), "the node",
                   [r / "log/slurmctld.log", r / "log/slurmd.log"])  # fmt: skip

    def stop(self) -> None:
        """Cancel every job (slurmstepd outlives slurmd), then end the daemons in reverse order:
        SIGTERM, then SIGKILL after 20 s; remove the config from the default path."""
        if any(p.poll() is None for p in self.procs) and self.ok(["squeue"]):
            self.ok(["scancel", "--full", "--user", str(os.getuid())])
            wait_until(lambda: not self.check(["squeue", "-h"]).strip(), "cancelling the jobs", [], 30)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        if self.installed_conf:
            DEFAULT_CONF.unlink(missing_ok=True)
            self.installed_conf = False

    # ------------------------------------------------------------------ commands
    def check(self, cmd: list[str]) -> str:
        run = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        if run.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
        return run.stdout

    def ok(self, cmd: list[str]) -> bool:
        return subprocess.run(cmd, capture_output=True, env=self.env).returncode == 0

    # ------------------------------------------------------------------ daemons
    def _daemon(self, cmd: list[str], name: str, env=None) -> subprocess.Popen:
        log = (self.root / "log" / f"{name}.out").open("ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env or self.env,
                             stdin=subprocess.DEVNULL)  # fmt: skip
        self.procs.append(p)
        time.sleep(0.2)
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited at once ({p.returncode}): {(self.root / 'log' / f'{name}.out').read_text()}")
        return p

    def _munge(self, r: Path) -> None:
        key = r / "munge/munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        # -f: run as root in a temp folder (munged otherwise insists on its own user and paths)
        self._daemon(["munged", "-F", "-f", f"--socket={r}/munge/socket", f"--key-file={key}",
                      f"--pid-file={r}/munge/pid", f"--log-file={r}/log/munged.log",
                      f"--seed-file={r}/munge/seed"], "munged")  # fmt: skip
        wait_until(lambda: (r / "munge/socket").exists(), "munged", [r / "log/munged.log"], 20)

    def _mariadb(self, r: Path, port: int) -> None:
        self.check(["mariadb-install-db", "--user=root", f"--datadir={r}/db", "--auth-root-authentication-method=normal",
                    "--skip-test-db"])  # fmt: skip
        init = r / "init.sql"
        init.write_text("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';\n"
                        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';\n")  # fmt: skip
        self._daemon(["mariadbd", "--no-defaults", "--user=root", f"--datadir={r}/db", f"--port={port}",
                      "--bind-address=127.0.0.1", f"--socket={r}/db.sock", f"--pid-file={r}/db.pid",
                      f"--init-file={init}", "--skip-name-resolve", "--innodb-buffer-pool-size=64M"], "mariadbd")  # fmt: skip

        def accepts() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(accepts, "mariadbd", [r / "log/mariadbd.out"])

    def _write_confs(self, r: Path, ports: dict) -> None:
        # this machine's CPUs and sockets as slurmd sees them; memory less a margin for the daemons
        hw = self.check(["slurmd", "-C"]).splitlines()[0].split()[1:]
        hw = [f for f in hw if not f.startswith("RealMemory=")]
        avail_mb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemAvailable"))) // 1024
        auth = f"AuthType=auth/munge\nAuthInfo=socket={r}/munge/socket\n"
        (r / "slurm.conf").write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost=localhost
SlurmctldPort={ports["ctld"]}
SlurmdPort={ports["slurmd"]}
{auth}CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={ports["dbd"]}
AccountingStoragePass={r}/munge/socket
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=300
MaxArraySize=1001
NodeName=localhost NodeAddr=127.0.0.1 {" ".join(hw)} RealMemory={max(avail_mb - 2048, 1024)} State=UNKNOWN
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        dbd = r / "slurmdbd.conf"
        dbd.write_text(f"""\
{auth}DbdHost=localhost
DbdPort={ports["dbd"]}
SlurmUser=root
LogFile={r}/log/slurmdbd.log
PidFile={r}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports["db"]}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)  # slurmdbd refuses a readable config (it holds the DB password)
