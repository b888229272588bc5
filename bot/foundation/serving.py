"""The two HTTP listeners (waitress), each with limits chosen for what it carries.

PORT carries Slack's requests (HTTP mode) and the hooks: anyone who can reach the Service can open
connections there. waitress stops accepting once `connection_limit` connections are open, so if the
probes shared that listener, ~100 idle clients would make the kubelet kill a healthy pod. HEALTH_PORT
has its own connection limit, threads and socket map: GET /healthz, /readyz, /metrics only.

Limits on PORT, deliberately:
- max_request_body_size 1 MiB (bot/foundation/web.py MAX_BODY): waitress answers 413 as soon as the
  Content-Length says more, without reading the body (its default is 1 GiB, read before Flask's check).
- channel_timeout 10 s, checked every cleanup_interval 2 s: Slack gives an app 3 s to answer, so a client
  idle for 10 s is not Slack; this frees connections held open by slow or idle clients.
- connection_limit 200 and 8 threads (HTTP_THREADS): acks are fast and the work runs after them.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from waitress import create_server
from waitress.server import BaseWSGIServer

from bot.foundation.web import MAX_BODY

log = logging.getLogger("deckhand.serving")

PORT_LIMITS = {"connection_limit": 200, "channel_timeout": 10, "cleanup_interval": 2,
               "max_request_body_size": MAX_BODY}
# Probes and scrapes: a few connections at a time, small GETs, nothing to wait for.
HEALTH_LIMITS = {"threads": 2, "connection_limit": 32, "channel_timeout": 5, "cleanup_interval": 2,
                 "max_request_body_size": 4096}


@dataclass
class Listeners:
    main: BaseWSGIServer
    health: BaseWSGIServer
    health_thread: threading.Thread | None = None

    def serve(self) -> None:
        """Start HEALTH_PORT in the background and serve PORT on this thread until `close()`."""
        self.health_thread = threading.Thread(target=self._run_health, name="health-http", daemon=True)
        self.health_thread.start()
        self.main.run()

    def _run_health(self) -> None:
        try:
            self.health.run()
        except (OSError, ValueError) as exc:  # closed under the loop at shutdown
            log.debug("health listener stopped: %s", exc)

    def close_main(self) -> None:
        """Stop accepting on PORT; waitress finishes the requests it has."""
        self.main.close()

    def close(self, timeout: float = 10.0) -> None:
        self.main.task_dispatcher.shutdown(cancel_pending=False, timeout=timeout)
        self.health.close()
        if self.health_thread is not None:
            self.health_thread.join(timeout=5)
        self.health.task_dispatcher.shutdown(cancel_pending=False, timeout=2)


def create_listeners(web, health_web, *, host: str, port: int, health_port: int, threads: int = 8) -> Listeners:
    main = create_server(web, host=host, port=port, threads=threads, ident="deckhand",
                         clear_untrusted_proxy_headers=True, **PORT_LIMITS)
    health = create_server(health_web, host=host, port=health_port, ident="deckhand",
                           clear_untrusted_proxy_headers=True, **HEALTH_LIMITS)
    return Listeners(main, health)
