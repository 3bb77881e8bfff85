"""The doors a delivery comes in by: webhooks, polled sources, CSV import, replay and the dry run."""
