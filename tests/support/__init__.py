"""Small helpers that several test modules share (conftest.py holds the fixtures)."""
