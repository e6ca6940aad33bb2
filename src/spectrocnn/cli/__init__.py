"""Thin command-line front ends: parse, build the configuration, call the library."""
