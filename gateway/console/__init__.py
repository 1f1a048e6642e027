"""The operator console: a small server-rendered web app in the daemon (see gateway.console.app)."""
