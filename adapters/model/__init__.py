"""The model: the generator with its per-token signals, the embedder, the chat model, provisioning, quoting."""
