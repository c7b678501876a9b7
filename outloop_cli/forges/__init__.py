"""Talking to forges (GitHub, GitLab): HTTP client, tokens, and the calls outloop makes."""
