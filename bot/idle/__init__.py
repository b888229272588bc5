"""Idle services: workloads that reserve CPU and memory but saw no Istio traffic over a window.

    scan   `scan_fleet(ctx, clusters, at)` -> FleetScan: one list per kind per cluster and two PromQL
           queries per query endpoint (clusters sharing one share them); `scan_cluster` for one.
           No data, or a partial answer, is never evidence of idleness
    store  what deckhand remembers: reports, snooze / keep / deletion decisions (compare-and-set),
           digests and their messages, metrics outages
"""
