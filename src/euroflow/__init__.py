"""euroflow: from web crawl to quantized multilingual LLM, with provenance."""

__version__ = "0.1.0"
