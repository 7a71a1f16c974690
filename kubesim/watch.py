"""Watches (`GET ...?watch=true`): a stream of `{"type": ..., "object": ...}` lines, one per change
of the objects the request selects, as kube-apiserver sends them (`kubectl get -w`, informers).

Where it starts, as documented for kube-apiserver: without a resourceVersion (or "0"), with an
ADDED event for each object there is now; with the resourceVersion a list returned, with the
changes after it (from the store's history; a version older than that is 410 Expired); with
`sendInitialEvents=true`, the objects there are now and then a BOOKMARK annotated
`k8s.io/initial-events-end`. It ends after `timeoutSeconds` (else 30 minutes), when the client
goes away, or when the cluster is removed.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubesim.store import ApiError, Kind, Store, parse_field_selector, parse_label_selector

DEFAULT_TIMEOUT_S = 1800


def stream(
    store: Store,
    kind: Kind,
    namespace: str,
    params: dict[str, str],
    closed: threading.Event,
    render: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Iterator[bytes]:
    """The watch's lines; selectors and the start are checked before the first one is sent.
    `render` turns each changed object into what is sent (a Table row for kubectl's printer)."""
    labels = parse_label_selector(params.get("labelSelector", ""))
    fields = parse_field_selector(params.get("fieldSelector", ""))

    def selected(plural: str, obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        return (
            plural == kind.plural
            and (not namespace or meta.get("namespace") == namespace)
            and labels(meta.get("labels") or {})
            and fields(obj)
        )

    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def listener(plural: str, event: str, obj: dict[str, Any] | None) -> None:
        if obj is not None and selected(plural, obj):
            events.put((event, obj))

    since = params.get("resourceVersion", "")
    initial = params.get("sendInitialEvents") == "true"
    with store.lock:
        if initial or since in ("", "0"):
            backlog = [("ADDED", o) for o in store.items(kind.plural) if selected(kind.plural, o)]
        else:
            backlog = _since(store, int(since) if since.isdigit() else -1, selected)
        now = store.revision
        store.on_change.append(listener)
    bookmark = _bookmark(kind, now) if initial else None
    return _lines(store, listener, backlog, events, bookmark, params, closed, render)


def _since(store: Store, since: int, selected: Any) -> list[tuple[str, dict[str, Any]]]:
    history = list(store.history)
    oldest = history[0][0] if history else store.revision
    forgotten = len(history) == store.history.maxlen and since < oldest - 1
    if since < 0 or forgotten:
        raise ApiError(410, "Expired", f"too old resource version: {since} ({oldest - 1})")
    return [(e, obj) for rv, plural, e, obj in history if rv > since and selected(plural, obj)]


def _lines(
    store: Store,
    listener: Any,
    backlog: list[tuple[str, dict[str, Any]]],
    events: queue.Queue[tuple[str, dict[str, Any]]],
    bookmark: dict[str, Any] | None,
    params: dict[str, str],
    closed: threading.Event,
    render: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> Iterator[bytes]:
    def line(event: str, obj: dict[str, Any]) -> bytes:
        shown = render(obj) if render is not None and event != "BOOKMARK" else obj
        return json.dumps({"type": event, "object": shown}).encode() + b"\n"

    timeout = params.get("timeoutSeconds", "")
    deadline = time.monotonic() + (int(timeout) if timeout.isdigit() else DEFAULT_TIMEOUT_S)
    try:
        for event, obj in backlog:
            yield line(event, obj)
        if bookmark is not None:
            yield line("BOOKMARK", bookmark)
        while not closed.is_set() and time.monotonic() < deadline:
            try:
                event, obj = events.get(timeout=0.5)
            except queue.Empty:
                continue
            yield line(event, obj)
    finally:
        with store.lock:
            store.on_change.remove(listener)


def _bookmark(kind: Kind, revision: int) -> dict[str, Any]:
    """The end of the initial events: the kind, with only a resourceVersion and the annotation."""
    return {
        "kind": kind.kind,
        "apiVersion": kind.api_version,
        "metadata": {
            "resourceVersion": str(revision),
            "annotations": {"k8s.io/initial-events-end": "true"},
        },
    }
