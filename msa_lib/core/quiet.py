"""Quiet first contact: keep other libraries' chatter that the user cannot act on off the terminal.

MediaPipe, TensorFlow Lite and absl write their start-up notes straight to file descriptor 2 from C++
("All log messages before absl::InitializeLog() ...", ``W0000 ... inference_feedback_manager.cc ...
Disabling support for feedback tensors``, "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."),
so neither Python's ``logging`` nor ``warnings`` can silence them. :func:`quiet_command_line` (called
by ``msa`` before any command runs):

* points the hub libraries at the local cache only (``HF_HUB_OFFLINE=1`` unless ``MSA_ALLOW_DOWNLOAD=1``:
  a bundled model is used without any connection attempt) and turns off their weights progress bars;
* routes fd 2 through a pipe and a reader thread that forwards everything except the informational
  (``I``) and warning (``W``) lines of those native loggers: Python's own messages, errors, tracebacks
  and progress bars pass unchanged and at once. Worker processes inherit the filtered fd 2.

``MSA_NATIVE_LOGS=1`` shows the native lines again (for debugging MediaPipe); the filter restores the
original fd 2 and drains the pipe at exit.
"""
from __future__ import annotations

import atexit
import faulthandler
import os
import re
import threading

# informational and warning lines of the native loggers (never errors: E / F lines and anything
# else pass through)
NATIVE_CHATTER = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\s*$"),
    re.compile(rb"^[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./+-]+:\d+\] "),  # absl / glog I and W levels
    re.compile(rb"^INFO: Created TensorFlow Lite (XNNPACK )?delegate for CPU\.?\s*$"),
)

_active: "_StderrFilter | None" = None


def is_chatter(line: bytes) -> bool:
    """Whether one line (without its newline) is native start-up chatter (see :data:`NATIVE_CHATTER`)."""
    return any(p.match(line) for p in NATIVE_CHATTER)


class _StderrFilter:
    """fd 2 -> pipe -> reader thread -> the original stderr, minus :func:`is_chatter` lines."""

    def __init__(self) -> None:
        self.real = os.dup(2)
        read_fd, write_fd = os.pipe()
        self.read_fd = read_fd
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.crash_file = os.fdopen(os.dup(self.real), "w")  # kept open: faulthandler writes to its fd
        faulthandler.enable(file=self.crash_file)  # a crash report bypasses the pipe
        self.thread = threading.Thread(target=self._forward, name="msa-stderr-filter", daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.real, data):]

    def _forward(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not is_chatter(line.rstrip(b"\r")))
            if pending and (b"\r" in pending or not pending.startswith((b"W", b"I"))):
                out, pending = out + pending, b""  # progress bars and partial writes go out at once
            if out:
                self._write(out)
        if pending and not is_chatter(pending):
            self._write(pending)

    def close(self) -> None:
        import sys

        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.real, 2)  # closes the pipe's last write end (workers are gone): the reader drains
        self.thread.join(timeout=2.0)
        os.close(self.read_fd)


def filter_native_stderr() -> None:
    """Start the fd-2 filter once per process (see the module docstring)."""
    global _active
    if _active is not None or os.environ.get("MSA_NATIVE_LOGS") == "1":
        return
    try:
        _active = _StderrFilter()
    except OSError:  # no fd 2 (a daemon): nothing to filter
        _active = None
        return
    atexit.register(restore_stderr)


def restore_stderr() -> None:
    """Forward what is still in the filter's pipe and give fd 2 back (at exit, or before ``os._exit``,
    which skips the atexit handlers)."""
    global _active
    if _active is not None:
        _active.close()
        _active = None


def quiet_command_line() -> None:
    """Offline hub lookups, no weights progress bars, and the native-chatter filter (for ``msa``)."""
    from msa_lib.core.pretrained import downloads_allowed

    if not downloads_allowed():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    filter_native_stderr()


__all__ = ["NATIVE_CHATTER", "is_chatter", "filter_native_stderr", "quiet_command_line", "restore_stderr"]
