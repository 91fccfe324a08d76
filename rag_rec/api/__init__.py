"""Thin adapters over `Recommender`: HTTP (FastAPI), MCP, LlamaIndex. No logic of their own."""
