"""Dex, the test OpenID Connect provider, built from its Go module (see server.py)."""
