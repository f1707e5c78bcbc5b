"""controller/devtools"""
