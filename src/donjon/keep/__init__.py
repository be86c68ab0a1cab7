"""donjon.keep"""
