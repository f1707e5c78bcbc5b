"""controller/router"""
