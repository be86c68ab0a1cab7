"""donjon.wasi"""
