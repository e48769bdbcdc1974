"""One daemon thread per embedded-AWS background loop (the alarm evaluator, the scheduler,
S3 Lifecycle): started once, stopped by setting ``_stopping`` and joining."""

from __future__ import annotations

import abc
import threading


class BackgroundLoop(abc.ABC):
    """``start``/``stop`` of a daemon thread running ``self._run`` until ``_stopping`` is set.
    A subclass names its thread (``thread_name``) and calls ``_init_loop`` in ``__init__``."""

    thread_name = "modelgate-loop"

    def _init_loop(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def _run(self) -> None:
        """The loop's body: runs until ``self._stopping`` is set."""

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join()
            self._thread = None
