"""Bulk indexing: reader -> encoder -> writer, composed by a local runner (worker processes) or a Ray
Data runner. Entry point: :func:`vlserve.ingest.pipeline.build`."""
