"""``outloop ui``: the live dashboard (loopback server, auth, live events, page assets)."""
