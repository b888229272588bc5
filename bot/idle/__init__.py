"""Idle services: workloads that reserve CPU and memory but saw no Istio traffic over a window.

    scan   `scan_cluster(ctx, cluster, at)` -> ClusterScan: one list per kind and two PromQL queries
           per cluster; no data is never evidence of idleness
    store  what deckhand remembers: reports, snooze / keep / deletion decisions (compare-and-set),
           digests and their messages, metrics outages
"""
