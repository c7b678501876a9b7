"""The agency example (``outloop demo --agency``): client repos, CRMs, keys, policy, runs, proof."""
