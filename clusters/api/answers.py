"""What a cluster answers about access over the REST API: "Why forbidden?" (what the CLI's
`warden why` asks) and the clusters where I hold access (what `warden kubeconfig` writes)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access import forbidden, permissions
from access.api import serializers as s
from clusters import answers, selectors
from clusters.api.serializers import ReachableClusterSerializer
from clusters.choices import ClusterState
from clusters.models import Cluster


class WhyForbiddenView(APIView):
    """Which roles of the catalogue would allow what Kubernetes refused, smallest first."""

    @extend_schema(request=s.WhyForbiddenSerializer, responses=s.ExplanationSerializer)
    def post(self, request: Request) -> Response:
        serializer = s.WhyForbiddenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        cluster = cluster_asked_about(data.pop("cluster"))
        try:
            if data["message"].strip():
                attempt = forbidden.parse_message(data["message"])
            else:
                data.pop("message")
                attempt = forbidden.attempt_from_fields(**data)
        except forbidden.UnreadableMessage as exc:
            raise ValidationError(str(exc)) from None
        explanation = answers.forbidden_explanation(request.user, attempt, cluster)
        return Response(s.ExplanationSerializer(explanation).data)


def cluster_asked_about(name: str) -> Cluster:
    """The live cluster named, or the only one when no name is given; else what to name."""
    live = Cluster.objects.exclude(state=ClusterState.RETIRED)
    if name:
        cluster = live.filter(name=name).first()
        if cluster is None:
            raise ValidationError(f"No live cluster is named {name!r}.")
        return cluster
    names = selectors.live_cluster_names(21)
    if len(names) != 1:
        raise ValidationError(
            "Name the cluster the message came from"
            + (f": one of {', '.join(names[:20])}." if names else " (none is registered).")
        )
    return live.get(name=names[0])


class MyClustersView(APIView):
    """The live clusters where I hold access, with what a kubeconfig entry needs."""

    @extend_schema(responses=ReachableClusterSerializer(many=True))
    def get(self, request: Request) -> Response:
        person = permissions.person_of(request.user)
        rows = selectors.reachable_clusters(person) if person is not None else []
        data = [
            {
                "name": row.cluster.name,
                "environment": row.cluster.environment,
                "tier": row.cluster.tier,
                "api_url": row.cluster.api_url,
                "ca_bundle": row.cluster.ca_bundle,
                "namespaces": list(row.namespaces),
                "username": row.username,
                "user_exec": row.user_exec,
            }
            for row in rows
        ]
        return Response(ReachableClusterSerializer(data, many=True).data)
