"""Penguin12."""
