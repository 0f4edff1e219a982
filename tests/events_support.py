"""Reading aeflow's events back from the Prefect server's events API (for the tests that check what
the flows emit: tests/integration)."""

from __future__ import annotations

import datetime as dt
from typing import Any


def read_events(dataset: str, since: dt.datetime, prefix: str = "aeflow.") -> list[Any]:
    """The events named ``prefix...`` of resource ``aeflow.dataset.<dataset>`` that occurred since
    ``since`` (oldest first), every page of them, as the server stored them."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventOrder,
        EventResourceFilter,
    )

    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    event_filter = EventFilter(
        occurred=EventOccurredFilter(since=since, until=until),
        event=EventNameFilter(prefix=[prefix]),
        resource=EventResourceFilter(id=[f"aeflow.dataset.{dataset}"]),
        order=EventOrder.ASC,
    )
    with get_client(sync_client=True) as client:
        page = client.read_events(filter=event_filter, limit=50)
        found = list(page.events)
        while page.next_page:
            page = client.read_events_page(str(page.next_page))
            found += page.events
    return found


def related(event: Any, role: str) -> list[str]:
    """The ids of ``event``'s related resources in ``role`` (e.g. "batch", "flow-run")."""
    return [r.id for r in event.related if r.role == role]
