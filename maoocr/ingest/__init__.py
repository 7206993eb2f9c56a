"""Bulk ingest: read an archive or folder safely and OCR each file through the HTTP API, resumably."""

from maoocr.ingest.archive import Entry, IngestLimits, Refused, SourceError, open_source
from maoocr.ingest.runner import IngestConfig, IngestRecord, exit_code, ingest, succeeded_paths

__all__ = ["Entry", "IngestConfig", "IngestLimits", "IngestRecord", "Refused", "SourceError", "exit_code",
           "ingest", "open_source", "succeeded_paths"]
