"""Node joins: the join script's reports, the node scan, and the incidents they raise.

    reports  `handle_report(ctx, body, headers)`: the signed /hooks/node-join door; stores phases
    scan     `scan(ctx)`: one list of Nodes and one of CSRs per cluster -> findings
    alerts   incidents per (cluster, node, reason): raise, group, resolve, acknowledge, silence
    posting  the Slack messages that show incidents, posted once and kept current in place
"""
