"""Pure domain logic: chunking, lexical scoring, rerank, uncertainty signals, probes, metrics, JSON files."""
