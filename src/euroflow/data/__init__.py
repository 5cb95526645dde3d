"""Data room: HPLT-style shards, NTREX demo source, cleaning, sampling, tokenization, FLORES."""
