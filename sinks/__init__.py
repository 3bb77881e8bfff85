"""Built-in sinks: where routed leads are forwarded. Each registers in the ``leadhub.sinks`` entry-point
group exactly as a third-party sink would (see pyproject.toml)."""
