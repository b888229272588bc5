"""Fleet listing: what every scan pays before it thinks, at `--sizes` services per cluster.

Each scan starts by listing Services, Deployments and Endpoints through bot/kube.KubeGateway
(the official client's ApiClient, raw JSON). This measures that floor with the Kubernetes fake
holding 50, 500 and 5,000 services, and shows that the number of API calls stays the same while
the time grows with the bytes. It is also the smallest example of the Scaling helper.
"""
from __future__ import annotations

from bench.common import Backends, Options, Result, Scaling, benchmark, log
from bench.fleet import seed_services

KINDS = ("SERVICES", "DEPLOYMENTS", "ENDPOINTS")


@benchmark("kube-list", order=20)
def kube_list(opts: Options) -> list[Result]:
    from bot.foundation import kube
    from bot.foundation.config import Cluster

    scaling = Scaling("fleet listing (Services+Deployments+Endpoints)", opts.sizes)
    with Backends(opts.workdir) as backends:
        for size in scaling.sizes:
            fake = backends.kube_fake()
            seed_services(fake, size)
            kubeconfig = backends.kubeconfig({"prod-a": fake}, name=f"kubeconfig-{size}")
            gateway = kube.KubeGateway([Cluster(name="prod-a", context="prod-a", kubeconfig=kubeconfig,
                                                prometheus_url="http://127.0.0.1:9")])
            gateway.list("prod-a", kube.NAMESPACES)  # connect and load the kubeconfig outside the timing
            before = gateway.calls["prod-a"]
            with scaling.measure(size) as step:
                items = sum(len(gateway.list("prod-a", getattr(kube, kind))) for kind in KINDS)
            step.calls = {"kubernetes": gateway.calls["prod-a"] - before}
            step.details = {"objects": items}
            gateway.close()
            fake.stop()
    log(scaling.table())
    return scaling.results(unit="s")
