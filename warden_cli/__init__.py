"""`warden`: the command line for people, a client of Warden's REST API (no Django inside)."""
