"""LLM backends for the domain model (transformers, llama.cpp, OpenAI-compatible servers) and the output guard."""
