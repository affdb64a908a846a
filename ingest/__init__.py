"""Ingest: IMDB-WIKI and FER-2013 into Parquet shards (pure cores plus a thin Ray Data wrapper)."""
