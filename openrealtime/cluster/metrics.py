"""Cluster gauges on each node's `/metrics`, from the node table it last read (refreshed per scrape):

    openrealtime_cluster_nodes{state}        live nodes: serving, draining, not_ready, full
    openrealtime_cluster_calls               calls on all live nodes (their last heartbeats)
    openrealtime_cluster_max_calls           the sum of their --max-calls
    openrealtime_cluster_store_up            1 while the cluster store answers
    openrealtime_cluster_routed_total{route} what this node did with requests: placed_here,
                                             forwarded, forward_failed, sidebands_piped, …

and, with `--llm-max-sessions` (and the other stages'), the model pools (cluster/model_pools.py):

    openrealtime_model_pool_sessions{stage}  sessions holding a lease in the pool, cluster-wide (last seen)
    openrealtime_model_pool_limit{stage}     the pool's limit
    openrealtime_model_pool_refused_total{stage}  new sessions this node refused with model_capacity_exceeded
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .model_pools import ModelPools
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


class ModelPoolCollector:
    def __init__(self, pools: ModelPools) -> None:
        self.pools = pools

    def describe(self) -> list:
        return []

    def collect(self):
        pools = self.pools
        sessions = GaugeMetricFamily("openrealtime_model_pool_sessions", "Sessions holding a lease in the model "
                                     "pool, on every node (as last counted).", labels=["stage"])
        limit = GaugeMetricFamily("openrealtime_model_pool_limit", "The model pool's limit of sessions at once "
                                  "(--<stage>-max-sessions).", labels=["stage"])
        refused = CounterMetricFamily("openrealtime_model_pool_refused", "New sessions this node refused because "
                                      "the model pool was full.", labels=["stage"])
        for stage in sorted(pools.limits):
            sessions.add_metric([stage], float(pools.counts[stage]))
            limit.add_metric([stage], float(pools.limits[stage]))
            refused.add_metric([stage], float(pools.refused[stage]))
        yield sessions
        yield limit
        yield refused
