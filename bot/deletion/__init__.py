"""Safe service deletion: who depends on a service, a second person's approval, deletion in order.

    dependencies  `check(ctx, cluster, namespace, service)` -> DependencyReport (callers, batch users,
                  routes, what would be deleted and what it frees); unknowns are blockers
    references    how objects name a service (hosts in batch pods, route destinations); pure
    requests      DeletionRequest records, their plan and their Slack message
    lifecycle     `create_request`, `approve`, `reject`, `expire_due`, `on_pull_request_closed`,
                  `recover_interrupted`: the state machine, each move a compare-and-set

Approval re-checks the dependencies before anything is deleted; a new blocker refuses.
"""
