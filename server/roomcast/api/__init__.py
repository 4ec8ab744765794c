"""FastAPI routers: thin adapters from HTTP and WebSocket routes to the hub."""
