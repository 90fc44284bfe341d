"""JetStream: persistent streams on a message store."""
