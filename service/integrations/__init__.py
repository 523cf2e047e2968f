"""Integrations with distributed engines: score their partitions and merge the states (issue 15 §4)."""
