"""The embedded demo: the whole pipeline in one process against local peers."""
