"""One admission control per worker, shared by every transport (HTTP ``/predict``, OIP REST, OIP gRPC).

Why: each front end used to count its own requests, so a worker admitted three times the documented
``IMGSERVE_MAX_INFLIGHT`` and ``imgserve_requests_in_flight`` saw only ``/predict``. Now a prediction request
on any transport takes one slot here before its body is read or decoded; beyond ``limit`` it is refused at
once (503 / UNAVAILABLE, with the batcher's estimate as Retry-After). The limit only bounds memory in a
flood: it is sized (``ServeSettings.inflight_limit``) so that ordinary shedding happens in the batcher.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from inference.errors import ConfigError, Overloaded


class Admission:
    """A counter with a cap. Not thread-safe by design: every transport runs on the worker's event loop."""

    def __init__(
        self,
        limit: int,
        retry_after: Callable[[], float],
        on_change: Callable[[int], None] | None = None,
    ):
        if limit < 1:
            raise ConfigError(f"the in-flight limit must be >= 1, got {limit}")
        self.limit = limit
        self.inflight = 0
        self._retry_after = retry_after
        self._on_change = on_change

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of a request; raise :class:`Overloaded` when all are taken."""
        if self.inflight >= self.limit:
            raise Overloaded(
                f"too many requests in progress ({self.inflight}), retry later", retry_after=self._retry_after()
            )
        self._set(self.inflight + 1)
        try:
            yield
        finally:
            self._set(self.inflight - 1)

    def _set(self, value: int) -> None:
        self.inflight = value
        if self._on_change is not None:
            self._on_change(value)
