"""Safe service deletion: who depends on a service, a second person's approval, deletion in order.

    dependencies  `check(ctx, cluster, namespace, service)` -> DependencyReport (callers, batch users,
                  routes, what would be deleted and what it frees); unknowns are blockers
    references    how objects name a service (hosts in batch pods, route destinations); pure
    requests      DeletionRequest records, their plan (object identities) and their Slack message
    lifecycle     `create_request`, `approve`, `reject`, `expire_due`, `on_pull_request_closed`,
                  `recover_interrupted`: the state machine, each move a compare-and-set
    execution     `run_deletion`: the approved plan, phase by phase, every DELETE with uid and
                  resourceVersion preconditions

What the approver saw is exactly what is deleted: approval re-checks the dependencies and compares
the plan with the one stored at request time; a new blocker, a new object, a re-created object (other
uid) or a new GitOps file refuses. Nothing is ever deleted in a protected namespace.
"""
