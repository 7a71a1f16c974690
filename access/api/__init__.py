"""The people side of the REST API (/api/v1/): thin callers of services and permissions."""
