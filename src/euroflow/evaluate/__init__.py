"""Evaluation: bits per byte on FLORES, multiple-choice accuracy, and the report."""
