"""Placeholder replaced by the login work."""
