"""What every feature stands on: settings, the context, SQLite, Slack posting, and the gateways.

    config     the YAML file, validated (pydantic); its value types in values, the environment's in secrets
    context    Context: one object built once with settings, store, gateways and the clock
    store      SQLite: compare-and-set transitions, audit, idempotency keys, expiring locks
    outbox     durable, per-channel ordered and paced Slack posting
    access     who is DevOps, who is in which team
    kube       Kubernetes gateway (raw JSON through the official client) and its errors
    gitops     GitHub gateway (PyGithub): files, one commit + one pull request
    traffic    Prometheus gateway (prometheus-api-client): per-cluster Prometheus or one shared query
               endpoint (Thanos, Mimir, VictoriaMetrics), partial answers as errors
    promql     scopes PromQL to clusters on a shared endpoint (cluster matcher, aggregations keep the label)
    services   finding a service (a Service plus the workloads it selects) across the fleet
    resources  quantities and what a workload reserves
    leader     Lease-based leader election: one instance runs jobs and holds the Socket Mode connection
    web        the HTTP routes beside Slack's: hooks (PORT); health, readiness, metrics (HEALTH_PORT)
    serving    the two waitress listeners (PORT, HEALTH_PORT) and the limits on each
    socket_mode  the Socket Mode link: background connect with backoff, reconnects, close on SIGTERM
    health     probes for `check`
    metrics    deckhand's own Prometheus metrics
    logs       logging setup and secret redaction

Nothing here imports a feature package.
"""
