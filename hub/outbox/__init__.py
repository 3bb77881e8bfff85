"""After the lead's transaction: the leased queues that send owners' notifications and forward leads to sinks."""
