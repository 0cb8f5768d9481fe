"""Worker threads that each run PyTorch on one CPU core, for work split into independent parts.

A forward pass of a small model on a batch of short prompts keeps two intra-op threads
busy only about 90% of the time, because every op ends at a barrier where one thread waits
for the other. Two workers with one intra-op thread each, each on its own batch, need no
barriers. On a 2-core CPU, `core.inference.hidden_states` reads SmolLM2's hidden states for
1,024 prompts in 13.3 s this way. One batch at a time on two threads takes 15.4 s at its
best batch size (docs/benchmarks.md, collapse geometry).

`torch.set_num_threads` sets the calling thread's count and also the count that threads
started later begin with. The pool sets one thread in each worker, then restores the
process default, so threads started later (Streamlit's script threads among them) keep
the usual count. This relies on the per-thread OpenMP settings of the CPU builds of
torch 2.x. With another threading backend the workers may share the usual threads: the
results stay the same, only slower.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_LOCK = threading.Lock()
_STREAMS: CpuStreams | None = None
_CHECKED = False  # True once the pool was built, or found not worth building


class CpuStreams:
    """A fixed pool of workers, each running torch with one intra-op thread."""

    def __init__(self, size: int):
        self.size = size
        started = threading.Barrier(size + 1)
        self._pool = ThreadPoolExecutor(
            size, thread_name_prefix="lab-cpu-stream", initializer=self._init_worker,
            initargs=(started,),
        )
        for _ in range(size):  # each task starts one worker, which waits at the barrier
            self._pool.submit(lambda: None)
        started.wait()

    @staticmethod
    def _init_worker(started: threading.Barrier) -> None:
        torch.set_num_threads(1)
        torch.get_num_threads()  # runs this thread's one-time setup while the count is 1
        started.wait()

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Call `fn` on every item on the workers and return the results in order.

        `fn` runs in another thread, so it must set up thread-local torch state itself
        (grad mode, autocast).
        """
        return list(self._pool.map(fn, items))


def cpu_streams() -> CpuStreams | None:
    """Return the shared pool, one worker per intra-op thread, or None on a 1-thread process."""
    global _STREAMS, _CHECKED
    with _LOCK:
        if not _CHECKED:
            default = torch.get_num_threads()
            if default >= 2:
                _STREAMS = CpuStreams(default)
                # NOTE: a thread that starts its first torch op before this line runs with
                # one thread. The window is the pool's start-up, once per process.
                torch.set_num_threads(default)  # the workers changed the default; restore it
            _CHECKED = True
        return _STREAMS
