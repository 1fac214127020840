"""LoRA: training reader and knowledge adapters, their records, the shipped weights, QA data."""
