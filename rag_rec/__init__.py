"""rag_rec: explained recommendations from a knowledge graph, FAISS and an LLM."""
