"""Hybrid retrieval over a Store: keyword + dense candidates, fused, reranked, packed."""
