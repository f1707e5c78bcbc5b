"""controller/common"""
