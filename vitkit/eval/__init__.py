"""Evaluation: metrics (pure tensor functions) and evaluate/predict."""
