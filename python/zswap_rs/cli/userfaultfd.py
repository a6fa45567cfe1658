"""Can a `Region` get a userfaultfd here, and how, or why not: for `zswap-rs info`.

A region serves its page faults through userfaultfd(2), in full mode
(without `UFFD_USER_MODE_ONLY`), since the kernel itself faults on a
region's pages when a system call reads or writes them. The kernel hands
out such a descriptor in one of two ways:

- the userfaultfd(2) system call: to root (CAP_SYS_PTRACE), or to anyone
  when `vm.unprivileged_userfaultfd` is 1;
- `/dev/userfaultfd` (Linux 6.1 and later): to whoever may open the device
  (`USERFAULTFD_IOC_NEW`), whatever the sysctl says.

The probe tries both, in that order, as a region would, and completes the
`UFFDIO_API` handshake on what it gets, so that "usable" means a descriptor
was obtained and speaks the API; the descriptor is closed again at once.
It needs nothing but ctypes: the answer must not depend on the compiled
module it is meant to diagnose.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
from dataclasses import dataclass

__all__ = ["UffdStatus", "explain", "status"]

#: userfaultfd(2)'s number per architecture (include/uapi/asm-generic/unistd.h
#: and each arch's syscall table).
SYSCALL_NUMBERS = {
    "x86_64": 323,
    "aarch64": 282,
    "riscv64": 282,
    "ppc64le": 364,
    "ppc64": 364,
    "s390x": 355,
}
#: `_IO(0xAA, 0x00)`: a new userfaultfd from /dev/userfaultfd.
USERFAULTFD_IOC_NEW = 0xAA00
#: `_IOWR(0xAA, 0x3F, struct uffdio_api)`: the API handshake (24-byte struct).
UFFDIO_API = (3 << 30) | (24 << 16) | (0xAA << 8) | 0x3F
#: The API version the handshake asks for.
UFFD_API = 0xAA
DEVICE = "/dev/userfaultfd"
SYSCTL = "/proc/sys/vm/unprivileged_userfaultfd"


@dataclass(frozen=True)
class UffdStatus:
    """Whether userfaultfd is usable here, how (`mode`), and if not, why."""

    usable: bool
    #: "syscall", "/dev/userfaultfd", or "none".
    mode: str
    #: What to change when it is not usable (None when it is).
    reason: str | None
    #: vm.unprivileged_userfaultfd (None: the kernel has no such sysctl).
    unprivileged_userfaultfd: int | None


class _UffdApi(ctypes.Structure):
    _fields_ = [
        ("api", ctypes.c_uint64),
        ("features", ctypes.c_uint64),
        ("ioctls", ctypes.c_uint64),
    ]


def _handshake(fd: int) -> None:
    """UFFDIO_API on `fd`, then close it; OSError if the kernel refuses."""
    try:
        api = _UffdApi(UFFD_API, 0, 0)
        fcntl.ioctl(fd, UFFDIO_API, api)
    finally:
        os.close(fd)


def _try_syscall() -> OSError | None:
    """None if the system call gave a working descriptor, else why not."""
    number = SYSCALL_NUMBERS.get(platform.machine())
    if number is None:
        return OSError(errno.ENOSYS, f"userfaultfd(2)'s number on {platform.machine()} is unknown")
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(number, os.O_CLOEXEC | os.O_NONBLOCK)
    if fd < 0:
        code = ctypes.get_errno()
        return OSError(code, os.strerror(code))
    try:
        _handshake(fd)
    except OSError as e:
        return e
    return None


def _try_device() -> OSError | None:
    """None if /dev/userfaultfd gave a working descriptor, else why not."""
    try:
        dev = os.open(DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return e
    try:
        fd = fcntl.ioctl(dev, USERFAULTFD_IOC_NEW, os.O_CLOEXEC | os.O_NONBLOCK)
        _handshake(fd)
    except OSError as e:
        return e
    finally:
        os.close(dev)
    return None


def _sysctl() -> int | None:
    try:
        with open(SYSCTL, "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def explain(syscall: OSError, device: OSError, sysctl: int | None) -> str:
    """Why neither way gave a descriptor, and what would change that."""
    if syscall.errno == errno.ENOSYS and isinstance(device, FileNotFoundError):
        return "the kernel has no userfaultfd (built without CONFIG_USERFAULTFD?)"
    if syscall.errno == errno.EPERM:
        why_call = (
            f"userfaultfd(2) refused: vm.unprivileged_userfaultfd = {sysctl} and no "
            "CAP_SYS_PTRACE (run as root, or sysctl vm.unprivileged_userfaultfd=1)"
            if sysctl is not None
            else "userfaultfd(2) refused (EPERM): run as root"
        )
    else:
        why_call = f"userfaultfd(2): {syscall.strerror}"
    if isinstance(device, FileNotFoundError):
        why_dev = f"no {DEVICE} (Linux 6.1 and later)"
    elif isinstance(device, PermissionError):
        why_dev = f"{DEVICE}: permission denied (give this user access to it)"
    else:
        why_dev = f"{DEVICE}: {device.strerror}"
    return f"{why_call}; {why_dev}"


def status() -> UffdStatus:
    """Try the system call, then the device, as a region would."""
    sysctl = _sysctl()
    syscall = _try_syscall()
    if syscall is None:
        return UffdStatus(True, "syscall", None, sysctl)
    device = _try_device()
    if device is None:
        return UffdStatus(True, DEVICE, None, sysctl)
    return UffdStatus(False, "none", explain(syscall, device, sysctl), sysctl)
