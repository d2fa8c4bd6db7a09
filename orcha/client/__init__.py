"""The client side: short-lived processes that talk to the service."""
