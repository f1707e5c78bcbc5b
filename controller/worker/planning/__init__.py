"""controller/worker/planning"""
