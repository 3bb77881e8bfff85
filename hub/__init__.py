"""lead hub: one durable front door for every lead channel."""

__version__ = "0.1.0"
