"""State changes of the machine side, split by subject. Views, API, tasks and commands call
these (as `services.<name>`, re-exported here), and nothing else changes clusters' state.

- inputs: what the compiler reads (clusters, roles, grants, people, service accounts as specs)
- checks: the credential check (can Warden manage RBAC there, and which cluster is it)
- reconciling: one cluster's reconcile, recorded as a run
- queueing: what to reconcile after a change, and reconciles people ask for
- registry: registering, editing and retiring clusters
- lookups: what a cluster says now (its roles' rules, its namespaces) for pages and previews
- shadow: the shadow-access scan
- keys: re-encrypting stored credentials under the newest key

Each module imports only those above it in this list (lookups and shadow: inputs).
"""

from __future__ import annotations

from clusters.services.checks import (
    REQUIRED_ACCESS,
    check_access,
    read_identity,
    refuse_second_registration,
    registered_as,
)
from clusters.services.inputs import (
    account_specs,
    endpoint_for,
    forget_shared_inputs,
    live_cluster_specs,
    live_clusters,
    load_inputs,
    shared_inputs,
)
from clusters.services.keys import (
    rotate_encryption_key,
)
from clusters.services.lookups import (
    CLUSTER_ROLE_CACHE_S,
    INTERACTIVE_TIMEOUT_S,
    NAMESPACES_CACHE_S,
    answering_clusters,
    cluster_role_rules,
    namespaces_missing,
)
from clusters.services.queueing import (
    FLEET_RECONCILE_KEPT,
    clusters_reached_by,
    queue_on_commit,
    queue_reconcile_for_grants,
    queue_reconcile_for_subjects,
    request_fleet_reconcile,
    request_reconcile,
    start_fleet_reconcile,
)
from clusters.services.reconciling import (
    DuplicateRegistration,
    reconcile_cluster,
)
from clusters.services.registry import (
    RETIRE_LOCK_WAIT_S,
    check_connection,
    cluster_facts,
    normal_pem,
    register_cluster,
    require_token_for_new_address,
    retire_cluster,
    update_cluster,
)
from clusters.services.shadow import (
    scan_shadow_access,
)

__all__ = [
    "CLUSTER_ROLE_CACHE_S",
    "FLEET_RECONCILE_KEPT",
    "INTERACTIVE_TIMEOUT_S",
    "NAMESPACES_CACHE_S",
    "REQUIRED_ACCESS",
    "RETIRE_LOCK_WAIT_S",
    "DuplicateRegistration",
    "account_specs",
    "answering_clusters",
    "check_access",
    "check_connection",
    "cluster_facts",
    "cluster_role_rules",
    "clusters_reached_by",
    "endpoint_for",
    "forget_shared_inputs",
    "live_cluster_specs",
    "live_clusters",
    "load_inputs",
    "namespaces_missing",
    "normal_pem",
    "queue_on_commit",
    "queue_reconcile_for_grants",
    "queue_reconcile_for_subjects",
    "read_identity",
    "reconcile_cluster",
    "refuse_second_registration",
    "register_cluster",
    "registered_as",
    "request_fleet_reconcile",
    "request_reconcile",
    "require_token_for_new_address",
    "retire_cluster",
    "rotate_encryption_key",
    "scan_shadow_access",
    "shared_inputs",
    "start_fleet_reconcile",
    "update_cluster",
]
