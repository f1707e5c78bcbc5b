"""controller/worker"""
