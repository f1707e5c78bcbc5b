"""controller/worker/windows"""
