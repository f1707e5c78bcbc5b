"""controller/offline"""
