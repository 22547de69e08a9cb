"""The HTTP contract: the Client protocol, its operations and their request models."""
