"""Tokenizer room: SentencePiece BPE training with Hugging Face files, fertility/parity report."""
