"""Penguin12 operator tools: programs a person runs against a deployment, not part of it."""
