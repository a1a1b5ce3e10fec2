"""TensorFlow only: a clean interpreter exit while a `tf.data` pipeline is prefetching.

Why this exists: `PKSampler.as_dataset` runs Python inside the pipeline
(`tf.numpy_function`). When the program ends while an endless pipeline is still
prefetching, a TensorFlow thread that enters Python during interpreter shutdown can hang
the process. `ACTIVITY.wrap` marks every such Python call, and an `atexit` hook waits
(briefly) until none is running. Nothing else in the library needs it; it is
self-contained so that it can move to the backend package as it is.
Tested by `tests/test_sampler.py::test_process_exits_with_a_live_items_pipeline`.
"""

import atexit
import threading
import time


class PipelineActivity:
    """Counts the Python calls our `tf.data` pipelines are running.

    A TensorFlow thread that enters Python (`tf.numpy_function`) while the interpreter
    shuts down can hang the process at exit when an endless pipeline is still
    prefetching. At exit we wait (at most `timeout` s) until no call is running and
    none has started for `quiet` s: by then the prefetch buffers are full and
    TensorFlow starts no more calls.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0
        self._last = 0.0
        self._registered = False

    def wrap(self, fn):
        if not self._registered:
            self._registered = True
            atexit.register(self.drain)

        def wrapped(*args):
            with self._lock:
                self._active += 1
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._active -= 1
                    self._last = time.monotonic()

        return wrapped

    def drain(self, quiet=0.2, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._active == 0 and time.monotonic() - self._last > quiet:
                    return
            time.sleep(0.02)


ACTIVITY = PipelineActivity()
