"""Stop requests: SIGTERM and SIGINT between steps, agreed on by every DDP rank."""

from __future__ import annotations

import signal
import threading

import torch
import torch.distributed as dist


class StopRequest:
    """SIGTERM (and SIGINT) set a flag that the loop reads between steps, so a scheduler's
    stop or Ctrl-C ends the run with a checkpoint instead of losing the work since the last."""

    def __init__(self):
        self.signal = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # asked twice: stop now, without the checkpoint
            signal.signal(signum, self.previous[signum])
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def agreed(self, world: int, device) -> bool:
        """True when any rank was asked to stop (every rank must leave at the same step)."""
        flag = self.signal is not None
        if world > 1:
            t = torch.tensor([float(flag)], device=device)
            dist.all_reduce(t)
            flag = t.item() > 0
        return flag
