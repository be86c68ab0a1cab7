"""donjon.steward"""
