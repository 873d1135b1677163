"""Evaluation: data sources (:mod:`.data`) and metrics (:mod:`.metrics`), arrays in, reports out."""
