"""Doors to outside systems that both apps use: the outbound-address guard and the webhook sender.

Nothing here imports `access` or `clusters`; they import it."""
