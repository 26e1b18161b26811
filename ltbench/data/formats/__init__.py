"""Readers for the on-disk formats users already have; each reads labels without decoding images where it can."""
