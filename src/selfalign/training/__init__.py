"""Supervised fine-tuning on the SFT JSONL (the data side now; the trainer lands with issue 5)."""
