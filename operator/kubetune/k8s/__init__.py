"""Kubernetes side: pure manifest builders and the one gateway that calls the API."""
