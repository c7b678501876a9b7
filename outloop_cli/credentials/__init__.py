"""Credentials: where secrets live, who may use them, and keeping them out of every sink.

The only package that touches ``keyring`` or secret values:

* ``store``    — the OS keyring (service ``outloop``, user ``<workspace>/<name>``)
  and a names-only index, refusing backends that would keep keys in plaintext;
* ``ci_env``   — ``OUTLOOP_SECRET_<WORKSPACE>_<NAME>`` variables, read once at
  start-up and removed from the process (re-exec) and every child;
* ``policy``   — the user's policy file binding repos to workspaces and secrets;
* ``grants``   — which of the secrets a loop asks for a run actually gets;
* ``masking``  — ``***`` for secrets (and their encodings) in everything written;
* ``broker``, ``proxy``, ``git_helper`` — how an agent uses a key without holding it.

Nothing is imported here so that ``import outloop_cli.credentials.x`` stays cheap.
"""
