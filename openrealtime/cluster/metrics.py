"""Cluster gauges on each node's `/metrics`, from the node table it last read (refreshed per scrape):

    openrealtime_cluster_nodes{state}        live nodes: serving, draining, not_ready, full
    openrealtime_cluster_calls               calls on all live nodes (their last heartbeats)
    openrealtime_cluster_max_calls           the sum of their --max-calls
    openrealtime_cluster_store_up            1 while the cluster store answers
    openrealtime_cluster_routed_total{route} what this node did with requests: placed_here,
                                             forwarded, forward_failed, sidebands_piped, …
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .store import NodeRecord


def node_state(node: NodeRecord) -> str:
    if node.draining:
        return "draining"
    if not node.ready:
        return "not_ready"
    return "full" if node.calls >= node.max_calls else "serving"


class ClusterCollector:
    def __init__(self, nodes: Callable[[], list[NodeRecord]], store_up: Callable[[], bool],
                 routed: Mapping[str, int]) -> None:
        self.nodes = nodes
        self.store_up = store_up
        self.routed = routed

    def describe(self) -> list:
        return []

    def collect(self):
        nodes = self.nodes()
        states = GaugeMetricFamily("openrealtime_cluster_nodes", "Live nodes of the cluster, by state.",
                                   labels=["state"])
        for state in ("serving", "draining", "not_ready", "full"):
            states.add_metric([state], float(sum(node_state(n) == state for n in nodes)))
        yield states
        yield GaugeMetricFamily("openrealtime_cluster_calls", "Calls on all live nodes (their last heartbeats).",
                                value=float(sum(n.calls for n in nodes)))
        yield GaugeMetricFamily("openrealtime_cluster_max_calls", "The sum of the live nodes' --max-calls.",
                                value=float(sum(n.max_calls for n in nodes)))
        yield GaugeMetricFamily("openrealtime_cluster_store_up", "1 while the cluster store answers.",
                                value=1.0 if self.store_up() else 0.0)
        routed = CounterMetricFamily("openrealtime_cluster_routed", "Requests this node placed, forwarded or "
                                     "piped to another node.", labels=["route"])
        for route, count in sorted(self.routed.items()):
            routed.add_metric([route], float(count))
        yield routed
