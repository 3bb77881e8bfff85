"""The hub's long-running processes (web server, workers, notifier, forwarder, scheduler), started together."""
