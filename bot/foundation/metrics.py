"""deckhand's own Prometheus metrics (prometheus-client), on a registry per app instance."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.foundation.logs import redact


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("deckhand_requests_total", "Slack commands, actions and views handled",
                                ["kind", "name", "outcome"], registry=r)
        self.refused = Counter("deckhand_refused_requests_total",
                               "Requests refused at a door before their body was read", ["door", "reason"], registry=r)
        self.errors = Counter("deckhand_errors_total", "Unhandled errors shown to users with an error id",
                              ["where"], registry=r)
        self.job_runs = Counter("deckhand_job_runs_total", "Scheduled job runs", ["job", "outcome"], registry=r)
        self.job_seconds = Histogram("deckhand_job_duration_seconds", "Scheduled job duration", ["job"],
                                     registry=r, buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300))
        self.alerts = Counter("deckhand_alerts_total", "Alert messages", ["kind", "event"], registry=r)
        self.backend_errors = Counter("deckhand_backend_errors_total", "Failed calls to backends",
                                      ["backend", "kind"], registry=r)
        self.open_incidents = Gauge("deckhand_open_incidents", "Open node-join incidents", registry=r)
        self.pending_approvals = Gauge("deckhand_pending_approvals", "Deletion requests awaiting approval",
                                       registry=r)
        self.leader = Gauge("deckhand_leader", "1 when this instance holds the lease and acts", registry=r)
        self.integration_up = Gauge("deckhand_integration_up", "1 when the integration's last call got an answer, "
                                    "0 while it fails (bot/foundation/integrations.py)", ["integration"], registry=r)
        self.outbox_pending = Gauge("deckhand_outbox_pending", "Slack messages waiting in the outbox", registry=r)
        self.socket_mode_connected = Gauge("deckhand_socket_mode_connected",
                                           "1 while the Socket Mode WebSocket to Slack is open", registry=r)
        # reason: refresh_requested / warning / link_disabled (Slack asked), dropped (no close frame), other
        self.socket_mode_reconnects = Counter("deckhand_socket_mode_reconnects_total",
                                              "Socket Mode connections replaced, by why", ["reason"], registry=r)
        self.socket_mode_connect_failures = Counter("deckhand_socket_mode_connect_failures_total",
                                                    "Failed attempts to open a Socket Mode connection", registry=r)

    def exposition(self) -> bytes:
        # Label values come from fixed sets, registered names and backend error kinds; an error kind is
        # an upstream's word, so the text goes through the one redactor too.
        return redact(generate_latest(self.registry).decode("utf-8")).encode("utf-8")
