"""Run a command in which ``socket(AF_NETLINK, ...)`` fails (run as a script).

    python no_netlink.py COMMAND [ARG]...

A seccomp filter makes the kernel refuse every netlink socket with
``EAFNOSUPPORT``, as systemd's ``RestrictAddressFamilies=`` without
``AF_NETLINK`` (or a container runtime's profile) does; then COMMAND is
exec'd. It stands for a daemon that cannot ask sock_diag who its loopback
peers are. x86-64 and arm64 only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
# (audit arch, socket(2)'s syscall number) by machine
ARCHES = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
# struct seccomp_data: nr (0), arch (4), instruction pointer (8), args[6] (16...)
NR, ARCH, ARG0 = 0, 4, 16


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter() -> None:
    arch, nr_socket = ARCHES[platform.machine()]
    program = [
        (BPF_LD_W_ABS, 0, 0, ARCH),
        (BPF_JEQ_K, 0, 5, arch),  # another ABI: allow (jump to the last instruction)
        (BPF_LD_W_ABS, 0, 0, NR),
        (BPF_JEQ_K, 0, 3, nr_socket),
        (BPF_LD_W_ABS, 0, 0, ARG0),  # the domain (the low half on little-endian)
        (BPF_JEQ_K, 0, 1, socket.AF_NETLINK),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    code = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = SockFprog(len(program), ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def main() -> None:
    install_filter()
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
