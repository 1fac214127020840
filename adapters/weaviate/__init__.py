"""Weaviate: the managed server and cluster, the passage store, passage files and ingestion."""
