"""Admin authentication: passwords, sign-in throttling, sessions, API tokens."""
