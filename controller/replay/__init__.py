"""controller/replay"""
