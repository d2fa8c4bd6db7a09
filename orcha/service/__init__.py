"""The service process: accepts clients, queues petitions, starts them, stops them."""
