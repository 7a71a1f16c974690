"""The machine side of the REST API (/api/v1/clusters/, reconcile runs): operators only."""
