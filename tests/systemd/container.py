"""A throwaway systemd, booted with systemd-nspawn on a copy-on-write overlay of ``/``.

::

    with boot_container() as c:
        run_in(c, ["useradd", "--system", "training"])
        run_in(c, ["systemctl", "start", "training-daemon"])
        run_in(c, ["sh", "-c", "touch /srv/training/x"], user="alice", umask=0o022)

How it is built, and why:

* ``unshare --mount --propagation private`` gives the launcher a mount namespace
  of its own: the tmpfs and the overlay (``lowerdir=/``, upper and work dirs on
  the tmpfs) exist only there, so the host never sees them and they vanish with
  the last process of that namespace; everything the container writes goes to
  the tmpfs, ``/`` itself is never written.
* ``systemd-nspawn --boot --register=no --keep-unit``: the host's PID 1 need not be
  systemd (no machined, no bus), so nothing is registered and no scope is made.
  ``--private-network``: the container's services must not touch the host's
  network. The launcher first moves itself into a cgroup of its own
  (``training-archiver-test-NAME`` in each systemd-relevant hierarchy), where
  nspawn puts its ``payload``/``supervisor`` cgroups; teardown removes that
  subtree, so no cgroup is left behind and parallel runs do not collide.
* Commands run through ``nsenter --all`` into the container's PID 1 with a clean
  environment, as root or (``user=``) as anyone through ``setpriv --init-groups``
  (so supplementary groups count, as after a login) with the ``umask=`` given.
  They are not in a unit of the container's systemd; for that, run
  ``systemd-run --wait --pipe --uid=NAME -p UMask=0022 ...`` through ``run_in``.

Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sysconfig
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.daemon_helpers import wait_until as wait_for

CGROUP_ROOT = Path("/sys/fs/cgroup")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAUNCHER = r"""
set -eu
for cg in $CGROUPS; do echo $$ > "$cg/cgroup.procs"; done
mount -t tmpfs -o mode=0755,size=2g tmpfs "$BASE"
mkdir "$BASE/upper" "$BASE/work" "$BASE/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$BASE/upper,workdir=$BASE/work" "$BASE/merged"
exec systemd-nspawn --quiet --boot --register=no --keep-unit --private-network \
    --console=pipe --machine="$NAME" --uuid="$UUID" --directory="$BASE/merged" \
    --bind-ro="$PROJECT:$PROJECT_INSIDE" --bind-ro="$PACKAGES:$PACKAGES_INSIDE"
"""
REPO = Path(__file__).resolve().parents[2]
PROJECT_INSIDE = "/opt/training-project"
"""Where the checkout is seen in the container, bound read-only, for root to copy from: the
host's path may lie under /tmp (a CI clone), which nspawn, and the unit's PrivateTmp=, hide."""
PACKAGES_INSIDE = "/opt/project-packages"
"""Where the test interpreter's site-packages are seen, bound read-only on their own: a bind
keeps the modes of the folders above its source out of the way (a clone in a 0700 mktemp
folder, a venv under /root), so the service user and the people can import from them."""


def packages_folder() -> str:
    """The site-packages of the interpreter running the tests (the project's venv)."""
    return sysconfig.get_paths()["purelib"]


def inside(host_path: str) -> str:
    """A host path as the container sees it (paths in the checkout move to PROJECT_INSIDE)."""
    path = Path(host_path)
    if path.is_relative_to(REPO):
        return str(PROJECT_INSIDE / path.relative_to(REPO))
    return host_path


class Unavailable(Exception):
    """This machine cannot boot the container (the reason is the message)."""


def why_unavailable() -> str | None:
    """None if :func:`boot_container` can work here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (mounts, namespaces, cgroups)"
    for tool in ("systemd-nspawn", "unshare", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            hint = " (apt-get install systemd-container)" if tool == "systemd-nspawn" else ""
            return f"{tool} not found{hint}"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs"
    if not _cgroups():
        return "no systemd cgroup hierarchy under /sys/fs/cgroup"
    return None


@dataclass
class Container:
    """A booted container: its name, the host pid of its PID 1, the launcher process."""

    name: str
    process: subprocess.Popen[bytes]
    cgroups: list[Path]
    base: Path
    log: Path
    leader: int = 0
    mount_ns: str = ""
    closed: bool = field(default=False, repr=False)

    @property
    def root(self) -> Path:
        """The container's ``/`` as the host sees it (write files in through this)."""
        return Path(f"/proc/{self.leader}/root")

    def run(self, cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return run_in(self, cmd, **kwargs)  # type: ignore[arg-type]

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a shell script in the container (``run_in`` with ``sh -c``)."""
        return run_in(self, ["sh", "-c", script], **kwargs)  # type: ignore[arg-type]

    def add_group(self, name: str, *, system: bool = False) -> None:
        run_in(self, ["groupadd", *(["--system"] if system else []), name])

    def add_user(
        self,
        name: str,
        *,
        groups: Sequence[str] = (),
        system: bool = False,
        home: str | None = None,
    ) -> None:
        """A user with a group of the same name (``useradd -U``), in ``groups`` as well.

        A system user (``training``, the service user) gets no home folder made.
        """
        cmd = ["useradd", "--user-group", "--shell", "/bin/sh"]
        cmd += ["--home-dir", home or f"/home/{name}"]
        cmd += ["--system", "--no-create-home"] if system else ["--create-home"]
        if groups:
            cmd += ["--groups", ",".join(groups)]
        run_in(self, [*cmd, name])

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_in(self, ["systemctl", "--no-pager", *args], check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show -p ...`` as a dict."""
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> str:
        """``journalctl --no-pager -o cat ARGS`` (the messages only)."""
        return run_in(self, ["journalctl", "--no-pager", "-o", "cat", *args]).stdout

    def close(self, timeout: float = 60) -> None:
        """Power the container off (kill it if it will not) and remove what the launcher made."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)  # nspawn: SIGRTMIN+3 to PID 1 = poweroff
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _kill(self.leader)  # the init of a PID namespace takes it all along
                    _killpg(self.process.pid)
                    self.process.wait(timeout=10)
        finally:
            wait_for(lambda: not self._processes_left(), 20, "the container's processes to exit")
            for cg in reversed(self.cgroups):
                _remove_cgroup(cg)
            if self.base.is_dir() and not os.path.ismount(self.base):
                self.base.rmdir()

    def _processes_left(self) -> list[int]:
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if self.mount_ns and os.readlink(entry / "ns/mnt") == self.mount_ns:
                    left.append(int(entry.name))
            except OSError:
                continue
        if self.leader and Path(f"/proc/{self.leader}").exists():
            left.append(self.leader)
        return left

    def leftovers(self) -> list[str]:
        """What of this container still exists on the host (empty after :meth:`close`)."""
        found = [f"process {pid} in the test's mount namespace" for pid in self._processes_left()]
        if self.process.poll() is None:
            found.append(f"launcher pid {self.process.pid}")
        found += [f"cgroup {cg}" for cg in self.cgroups if cg.exists()]
        mounts = Path("/proc/self/mountinfo").read_text()
        found += [f"mount {self.base}" for line in mounts.splitlines() if str(self.base) in line]
        if self.base.exists():
            found.append(f"folder {self.base}")
        return found


def run_in(
    container: Container,
    cmd: Sequence[str],
    *,
    user: str | None = None,
    umask: int | None = None,
    env: dict[str, str] | None = None,
    cwd: str = "/",
    check: bool = True,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` inside the container, as root or as ``user`` (with their groups), and wait.

    The environment is clean (``PATH``, ``HOME``, ``USER``, ``LANG`` and ``env``);
    ``check`` raises with the command's output when it fails.
    """
    home = "/root" if user is None else _home(container, user)
    environ = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": home, "USER": user or "root", **(env or {})}
    inner = list(cmd)
    if umask is not None:
        inner = ["sh", "-c", f'umask {umask:04o}; cd {shlex.quote(cwd)}; exec "$@"', "sh", *inner]
    if user is not None:
        inner = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *inner]
    full = [
        "nsenter",
        f"--target={container.leader}",
        "--all",
        f"--wd={cwd}",
        "--",
        "env",
        "-i",
        *(f"{k}={v}" for k, v in environ.items()),
        *inner,
    ]
    done = subprocess.run(
        full, capture_output=True, text=True, timeout=timeout, input=input, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{shlex.join(cmd)} (user {user or 'root'}) exited {done.returncode}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
    return done


def _home(container: Container, user: str) -> str:
    for line in (container.root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return fields[5]
    raise AssertionError(f"no user {user} in the container")


@contextmanager
def boot_container(name: str | None = None, timeout: float = 90) -> Iterator[Container]:
    """Boot a container, yield it once its systemd has finished starting up, then remove it."""
    reason = why_unavailable()
    if reason:
        raise Unavailable(reason)
    name = name or f"ta-test-{secrets.token_hex(3)}"
    base = Path(f"/tmp/{name}")
    base.mkdir(mode=0o700)
    cgroups = [
        h / _own_cgroup(h).lstrip("/") / f"training-archiver-test-{name}" for h in _cgroups()
    ]
    for cg in cgroups:
        cg.mkdir()
    log = Path(f"/tmp/{name}.log")
    env = {
        "PATH": PATH,
        "BASE": str(base),
        "NAME": name,
        "UUID": secrets.token_hex(16),
        "CGROUPS": " ".join(map(str, cgroups)),
        "PROJECT": str(REPO),
        "PROJECT_INSIDE": PROJECT_INSIDE,
        "PACKAGES": packages_folder(),
        "PACKAGES_INSIDE": PACKAGES_INSIDE,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", LAUNCHER],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    container = Container(name=name, process=process, cgroups=cgroups, base=base, log=log)
    try:
        container.leader = wait_for(lambda: _init_of(container), timeout, f"{name}'s PID 1")
        container.mount_ns = os.readlink(f"/proc/{process.pid}/ns/mnt")
        state = wait_for(lambda: _booted(container), timeout, f"{name} to finish booting")
        if state not in ("running", "degraded"):
            raise AssertionError(f"{name} booted into state {state}")
        yield container
    finally:
        container.close()
        log.unlink(missing_ok=True)


def _init_of(container: Container) -> int | None:
    if container.process.poll() is not None:
        raise AssertionError(
            f"systemd-nspawn exited {container.process.returncode}: "
            f"{container.log.read_text(errors='replace')[-2000:]}"
        )
    pid = container.process.pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                return int(child)
    except OSError:
        pass
    return None


def _booted(container: Container) -> str | None:
    done = subprocess.run(
        ["nsenter", f"--target={container.leader}", "--all", "systemctl", "is-system-running"],
        capture_output=True,
        text=True,
        check=False,
    )
    state = done.stdout.strip()
    return state if state in ("running", "degraded", "maintenance", "stopping") else None


def _cgroups() -> list[Path]:
    """The hierarchies nspawn uses: unified + name=systemd (hybrid), or the cgroup2 root."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    return [h for h in (CGROUP_ROOT / "unified", CGROUP_ROOT / "systemd") if h.is_dir()]


def _own_cgroup(hierarchy: Path) -> str:
    key = "" if hierarchy.name in ("unified", "cgroup") else "name=systemd"
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == key:
            return path
    return "/"


def _remove_cgroup(cg: Path) -> None:
    if not cg.exists():
        return
    for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        sub.rmdir()
    cg.rmdir()


def _kill(pid: int) -> None:
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
