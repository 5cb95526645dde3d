"""Quantization for edge devices: GGUF for llama.cpp, torch int8 weight-only, and the quality table."""
