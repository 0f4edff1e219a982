"""Pipeline stages over threads with bounded memory: a prefetching reader and an ordered map.

Scoring streams a batch as read -> score -> write; these join the stages so each works while the
others do, and memory holds a few record batches whatever the file size.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Record batches buffered between the reading and the scoring threads.
PIPELINE_DEPTH = 2


def prefetch(
    items: Iterable[T], depth: int = PIPELINE_DEPTH, name: str = "prefetch"
) -> Iterator[T]:
    """Iterate ``items`` in a background thread, keeping at most ``depth`` items ready.

    A stage of a pipeline: the producer's work (Parquet decoding) overlaps with the consumer's,
    while the bounded queue keeps memory flat. An exception in the producer is raised
    in the consumer; closing the consumer stops the producer.
    """
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(("error", exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name=f"aeflow-{name}", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        producer.join()


def ordered_map(
    function: Callable[[T], Any],
    items: Iterable[T],
    workers: int,
    initializer: Callable[[], None] | None = None,
    name: str = "map",
) -> Iterator[Any]:
    """``function`` over ``items`` in ``workers`` threads; results in input order, with at most
    ``workers + 1`` items in flight (memory stays bounded). An exception is raised in order, and
    closing the iterator cancels the work not yet started.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix=f"aeflow-{name}", initializer=initializer)
    in_flight: deque[Future[Any]] = deque()
    try:
        for item in items:
            in_flight.append(pool.submit(function, item))
            if len(in_flight) > workers:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
