"""Running the service: health and readiness, metrics, the request log, request ids, draining, docs, memory."""
