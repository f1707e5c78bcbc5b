"""controller/worker/ingest"""
