"""deckhand's core: domain logic and gateways. Knows nothing of Bolt listeners or Block Kit.

One package per capability over one shared foundation:

    foundation/  config (+ values, secrets), context, store, outbox, access, kube, gitops, traffic (Prometheus), leader,
                 web, health, metrics, logs; services and resources (what a service is, what it reserves)
    canary/      discover canaries, step / promote / abort them (Istio or Argo Rollouts), reminders
    pipelines/   the pipeline form, rendering, one pull request per change, merge tracking
    deletion/    dependency check, four-eyes deletion requests, deletion in a safe order
    idle/        idle-service scan, decisions (snooze / keep / delete), digests
    nodes/       node-join reports, the node scan, incidents and their Slack messages

A feature package imports the foundation and its own modules, never another feature's
(tests/test_architecture.py); where two features meet, app.py wires them (see
`Context.pull_request_handlers`).
"""
